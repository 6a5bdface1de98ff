"""Backends the contract suite runs on.

Adding a backend is one more entry in BACKENDS: an async context manager that yields a
ready, empty storage and cleans up after itself. It gets the test's fixture request, to
ask for the services it needs (which skip, or fail in CI, when they are missing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from filesvc.storage.base import Storage
from filesvc.storage.local import LocalStorage
from filesvc.storage.memory import MemoryStorage
from filesvc.storage.s3 import S3Storage
from filesvc.storage.s3_client import S3Calls, S3Options, build_client
from tests.seaweedfs import REGION, SeaweedFS

BackendFactory = Callable[[pytest.FixtureRequest, Path], AbstractAsyncContextManager[Storage]]
MiB = 1024 * 1024


@asynccontextmanager
async def local_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    yield LocalStorage(tmp_path / "blobs")


@asynccontextmanager
async def memory_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    yield MemoryStorage()


def s3_storage(seaweedfs: SeaweedFS, bucket: str, **options: object) -> S3Storage:
    """An S3 backend on the test SeaweedFS, built as the app builds it."""
    defaults: dict[str, object] = {
        "endpoint_url": seaweedfs.endpoint_url,
        "region": REGION,
        "part_size": 5 * MiB,
        "max_pool_connections": 8,
        "max_attempts": 2,
    }
    s3_options = S3Options(bucket=bucket, **(defaults | options))  # type: ignore[arg-type]
    return S3Storage(S3Calls(build_client(s3_options), s3_options))


@asynccontextmanager
async def s3_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    seaweedfs: SeaweedFS = request.getfixturevalue("seaweedfs")
    yield s3_storage(seaweedfs, request.getfixturevalue("s3_bucket"))


BACKENDS: dict[str, BackendFactory] = {
    "local": local_backend,
    "memory": memory_backend,
    "s3": s3_backend,
}


@pytest.fixture(params=list(BACKENDS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with BACKENDS[request.param](request, tmp_path) as backend:
        try:
            yield backend
        finally:
            await backend.aclose()
