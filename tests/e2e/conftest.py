"""Fixtures for the end-to-end suite: real `filesvc serve` processes on free ports.

One server per test module keeps the suite fast on two cores (a start, the admin login
and an editor cost two to three seconds). Tests stay independent by comparing rows and
blobs before and after themselves rather than expecting an empty server, and each test
still fails on its own if the server wrote a traceback while it ran.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

from tests.conftest import new_postgres_database
from tests.seaweedfs import SeaweedFS

from .browser import CHROMIUM, CHROMIUM_ARGS, missing_prerequisite
from .server import (
    UPLOAD_LIMIT_BYTES,
    LocalFile,
    MiB,
    RunningServer,
    S3Target,
    User,
    create_user,
    make_random_file,
    run_server,
)

BIG_FILE_BYTES = 100 * MiB


def required_binary(name: str, why: str) -> str:
    """The binary's path; fails in CI without it (the CI image must have it), else skips."""
    path = shutil.which(name)
    if path is None:
        reason = f"{why}, and {name} is not on PATH"
        if os.environ.get("CI"):
            pytest.fail(reason + f" (CI is set: install {name} in the CI image)")
        pytest.skip(reason + f" (install {name} to run these tests)")
    return path


@pytest.fixture(scope="session")
def curl() -> str:
    return required_binary("curl", "the e2e suite drives uploads with the real curl binary")


@pytest.fixture(scope="session")
def unzip() -> str:
    return required_binary("unzip", "the archive tests check zips with the real unzip binary")


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFile]:
    """100 MiB of random bytes, made once per session."""
    directory = tmp_path_factory.mktemp("big")
    file = make_random_file(directory / "big.bin", BIG_FILE_BYTES)
    yield file
    file.path.unlink(missing_ok=True)


def _serve(
    tmp_path_factory: pytest.TempPathFactory, name: str, env: dict[str, str] | None = None
) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp(name)
    with run_server(root, env) as server:
        yield server
    # Keep the logs and the database for a post-mortem; the blobs can be hundreds of MiB.
    shutil.rmtree(server.blobs_dir, ignore_errors=True)


def _checked(server: RunningServer) -> Iterator[RunningServer]:
    server.new_tracebacks()  # whatever came before this test is not its fault
    yield server
    tracebacks = server.new_tracebacks()
    if tracebacks:
        pytest.fail(f"the server wrote a traceback to stderr:\n{tracebacks[-8000:]}")
    assert server.process.poll() is None, "the server process died during the test"


@pytest.fixture(scope="module")
def server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from _serve(tmp_path_factory, "server")


@pytest.fixture(scope="module")
def s3_target(seaweedfs: SeaweedFS) -> Iterator[S3Target]:
    """A bucket of the session's SeaweedFS for one module's S3 server."""
    bucket = seaweedfs.create_bucket()
    yield S3Target(seaweedfs.endpoint_url, bucket)
    seaweedfs.release_bucket(bucket)


@pytest.fixture(scope="module")
def s3_database_url() -> Iterator[str]:
    """The S3 server's own PostgreSQL database: the second stack, as in the API suite."""
    with new_postgres_database("filesvc_e2e") as url:
        yield url


def serve_on(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    storage: str,
    env: dict[str, str] | None = None,
) -> Iterator[RunningServer]:
    """A module's server on SQLite and local disk, or on PostgreSQL and S3 (the API suite's
    two stacks), for modules that run on both."""
    env = env or {}
    if storage == "s3":
        target: S3Target = request.getfixturevalue("s3_target")
        database_url: str = request.getfixturevalue("s3_database_url")
        env = env | target.env() | {"FILESVC_DATABASE_URL": database_url}
        yield from _serve(tmp_path_factory, "server-s3", env)
    else:
        yield from _serve(tmp_path_factory, "server", env)


def on_both_stacks(name: str = "server_process", env: dict[str, str] | None = None) -> object:
    """A module-scoped server fixture called `name`, run once on SQLite and local disk and
    once on PostgreSQL and S3: `server_process = on_both_stacks()` in a module."""

    @pytest.fixture(scope="module", params=["local", "s3"], name=name)
    def server_on_a_stack(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[RunningServer]:
        yield from serve_on(request, tmp_path_factory, request.param, env)

    return server_on_a_stack


@pytest.fixture
def server(server_process: RunningServer) -> Iterator[RunningServer]:
    """The module's server; fails the test if it logged a traceback meanwhile."""
    yield from _checked(server_process)


@pytest.fixture(scope="module")
def editor(server_process: RunningServer) -> User:
    return create_user(server_process, "editor")


@pytest.fixture(scope="module")
def limited_server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {"FILESVC_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT_BYTES)}
    yield from _serve(tmp_path_factory, "limited", env)


@pytest.fixture
def limited_server(limited_server_process: RunningServer) -> Iterator[RunningServer]:
    """A server whose upload limit is 10 MiB."""
    yield from _checked(limited_server_process)


@pytest.fixture(scope="module")
def limited_editor(limited_server_process: RunningServer) -> User:
    return create_user(limited_server_process, "editor")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's chromium through Playwright, one per module (never `playwright install`)."""
    if not CHROMIUM.is_file():
        missing_prerequisite(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_prerequisite("the playwright package is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()
