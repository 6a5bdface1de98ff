"""Backends the contract suite runs on.

Adding a backend (S3 on SeaweedFS, say) is one more entry in BACKENDS: an async context
manager that yields a ready, empty storage and cleans up after itself. It may call
pytest.skip() when the service it needs is not configured.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from filesvc.storage.base import Storage
from filesvc.storage.local import LocalStorage
from filesvc.storage.memory import MemoryStorage

BackendFactory = Callable[[Path], AbstractAsyncContextManager[Storage]]


@asynccontextmanager
async def local_backend(tmp_path: Path) -> AsyncIterator[Storage]:
    yield LocalStorage(tmp_path / "blobs")


@asynccontextmanager
async def memory_backend(tmp_path: Path) -> AsyncIterator[Storage]:
    yield MemoryStorage()


BACKENDS: dict[str, BackendFactory] = {
    "local": local_backend,
    "memory": memory_backend,
}


@pytest.fixture(params=list(BACKENDS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with BACKENDS[request.param](tmp_path) as backend:
        try:
            yield backend
        finally:
            await backend.aclose()
