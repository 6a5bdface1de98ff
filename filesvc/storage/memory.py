"""In-memory backend: a real implementation of the storage protocols, for tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from filesvc.storage.base import (
    ByteRange,
    GetResult,
    ObjectAlreadyExists,
    ObjectMeta,
    ObjectNotFound,
    PendingWrite,
    StorageError,
    validate_key,
)


class MemoryBlobWriter:
    def __init__(self, storage: MemoryStorage, key: str) -> None:
        self.key = key
        self.id = uuid.uuid4().hex
        self._storage = storage
        self._chunks: list[bytes] | None = []
        self.size = 0
        self.last_activity = datetime.now(UTC)
        storage._writers[self.id] = self

    async def write(self, data: bytes) -> None:
        if self._chunks is None:
            raise StorageError("writer is closed")
        self._chunks.append(bytes(data))
        self.size += len(data)
        self.last_activity = datetime.now(UTC)

    async def commit(self) -> ObjectMeta:
        if self._chunks is None:
            raise StorageError("writer is closed")
        data = b"".join(self._chunks)
        self._close()
        # No await from the check to the store: create-only is atomic on the event loop.
        if self.key in self._storage._objects:
            raise ObjectAlreadyExists(self.key)
        meta = ObjectMeta(key=self.key, size=len(data), last_modified=datetime.now(UTC))
        self._storage._objects[self.key] = (meta, data)
        return meta

    async def abort(self) -> None:
        self._close()

    def _close(self) -> None:
        self._chunks = None
        self._storage._writers.pop(self.id, None)


class MemoryStorage:
    name = "memory"

    def __init__(self) -> None:
        self._objects: dict[str, tuple[ObjectMeta, bytes]] = {}
        self._writers: dict[str, MemoryBlobWriter] = {}

    def _lookup(self, key: str) -> tuple[ObjectMeta, bytes]:
        try:
            return self._objects[validate_key(key)]
        except KeyError:
            raise ObjectNotFound(key) from None

    async def open_writer(self, key: str) -> MemoryBlobWriter:
        return MemoryBlobWriter(self, validate_key(key))

    async def head(self, key: str) -> ObjectMeta:
        return self._lookup(key)[0]

    async def get(self, key: str, byte_range: ByteRange | None = None) -> GetResult:
        meta, data = self._lookup(key)
        if byte_range is None:
            byte_range = ByteRange(0, meta.size)
        clamped = ByteRange(min(byte_range.start, meta.size), min(byte_range.end, meta.size))

        async def chunks() -> AsyncIterator[bytes]:
            if clamped.length:
                yield data[clamped.start : clamped.end]

        return GetResult(meta=meta, range=clamped, chunks=chunks())

    async def delete(self, key: str) -> None:
        self._objects.pop(validate_key(key), None)

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectMeta]:
        # A snapshot, so callers may delete while iterating.
        found = [meta for key, (meta, _) in self._objects.items() if key.startswith(prefix)]
        for meta in sorted(found, key=lambda m: m.key):
            yield meta

    async def pending_writes(self) -> AsyncIterator[PendingWrite]:
        # Every open writer: in one process there is no stale write to tell apart.
        found = [
            PendingWrite(id=w.id, key=w.key, size=w.size, last_activity=w.last_activity)
            for w in self._writers.values()
        ]
        for pending in sorted(found, key=lambda p: p.id):
            yield pending

    async def discard_pending(self, pending: PendingWrite) -> bool:
        writer = self._writers.get(pending.id)
        if writer is not None:
            writer._close()
        return True

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
