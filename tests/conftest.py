"""Shared fixtures: a migrated database on SQLite and PostgreSQL, the app, a client, users.

PostgreSQL is the real server on this machine (FILESVC_TEST_POSTGRES_URL overrides it).
In CI a missing service fails the run; elsewhere its tests are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
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


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for the session, dropped afterwards."""
    name = f"filesvc_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin_execute(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        service_missing(f"PostgreSQL at {POSTGRES_URL} is not available: {exc}")
    url = _asyncpg_url(name).replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'filesvc.db'}"
        upgrade(url)
        return url
    postgres_url: str = request.getfixturevalue("postgres_database")
    asyncio.run(_truncate_postgres(postgres_url))
    return postgres_url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        admin_password=SecretStr(ADMIN_PASSWORD),
        secret_key=SecretStr("test-secret-key-" + "x" * 32),
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


def blob_files(settings: Settings) -> list[Path]:
    """Every file under the storage root, temp files included."""
    root = settings.resolved_storage_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
