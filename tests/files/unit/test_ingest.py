from __future__ import annotations

import hashlib
import os

import pytest

from filesvc.files.errors import ChecksumMismatch, UploadTooLarge
from filesvc.files.ingest import BATCH_BYTES, BlobSink
from filesvc.files.limits import ByteBudget, UploadLimits
from filesvc.storage.base import ObjectNotFound, StorageError
from filesvc.storage.keys import new_storage_key
from filesvc.storage.memory import MemoryBlobWriter, MemoryStorage

PIECE = 64 * 1024 + 7  # odd-sized, so batches never line up with pieces
DATA = os.urandom(2 * BATCH_BYTES + 12345)


async def read_back(storage: MemoryStorage, key: str) -> bytes:
    result = await storage.get(key)
    return b"".join([chunk async for chunk in result.chunks])


async def new_sink(storage: MemoryStorage, budget: ByteBudget | None = None) -> BlobSink:
    writer = await storage.open_writer(new_storage_key())
    return BlobSink(writer, budget or ByteBudget(UploadLimits(max_bytes=10 * len(DATA))))


async def write_pieces(sink: BlobSink, data: bytes, piece: int = PIECE) -> None:
    for i in range(0, len(data), piece):
        await sink.write(data[i : i + piece])


async def upload(sink: BlobSink, data: bytes) -> str:
    await write_pieces(sink, data)
    return await sink.finish(None)


async def assert_empty(storage: MemoryStorage, key: str) -> None:
    with pytest.raises(ObjectNotFound):
        await storage.head(key)
    assert [meta async for meta in storage.list()] == []


async def test_bytes_and_digest_match() -> None:
    storage = MemoryStorage()
    sink = await new_sink(storage)
    await write_pieces(sink, DATA)
    digest = await sink.finish(None)
    assert digest == hashlib.sha256(DATA).hexdigest()
    assert sink.size == len(DATA)
    assert await read_back(storage, sink.writer.key) == DATA
    assert (await storage.head(sink.writer.key)).size == len(DATA)


@pytest.mark.parametrize("size", [0, 1, BATCH_BYTES - 1, BATCH_BYTES, BATCH_BYTES + 1])
async def test_sizes_around_the_batch(size: int) -> None:
    storage = MemoryStorage()
    sink = await new_sink(storage)
    data = DATA[:size]
    await write_pieces(sink, data, piece=4096)
    assert await sink.finish(hashlib.sha256(data).hexdigest()) == hashlib.sha256(data).hexdigest()
    assert await read_back(storage, sink.writer.key) == data


async def test_one_write_larger_than_a_batch() -> None:
    storage = MemoryStorage()
    sink = await new_sink(storage)
    await sink.write(DATA)
    await sink.write(b"tail")
    assert await sink.finish(None) == hashlib.sha256(DATA + b"tail").hexdigest()
    assert await read_back(storage, sink.writer.key) == DATA + b"tail"


async def test_matching_checksum_commits() -> None:
    storage = MemoryStorage()
    sink = await new_sink(storage)
    await write_pieces(sink, DATA)
    expected = hashlib.sha256(DATA).hexdigest()
    assert await sink.finish(expected) == expected
    assert await read_back(storage, sink.writer.key) == DATA


async def test_checksum_mismatch_commits_nothing() -> None:
    storage = MemoryStorage()
    sink = await new_sink(storage)
    await write_pieces(sink, DATA)
    with pytest.raises(ChecksumMismatch) as excinfo:
        await sink.finish(hashlib.sha256(b"something else").hexdigest())
    assert excinfo.value.status_code == 400
    await sink.abort()
    await assert_empty(storage, sink.writer.key)


async def test_over_budget() -> None:
    storage = MemoryStorage()
    sink = await new_sink(storage, ByteBudget(UploadLimits(max_bytes=BATCH_BYTES + 10)))
    with pytest.raises(UploadTooLarge) as excinfo:
        await write_pieces(sink, DATA)
    assert excinfo.value.status_code == 413
    # Stopped at the first piece over the limit: the rest was never accepted.
    assert sink.size <= BATCH_BYTES + 10
    await sink.abort()
    await assert_empty(storage, sink.writer.key)


async def test_exactly_at_budget_is_fine() -> None:
    storage = MemoryStorage()
    sink = await new_sink(storage, ByteBudget(UploadLimits(max_bytes=len(DATA))))
    await write_pieces(sink, DATA)
    await sink.finish(None)
    assert await read_back(storage, sink.writer.key) == DATA


async def test_budget_is_shared_across_sinks() -> None:
    storage = MemoryStorage()
    budget = ByteBudget(UploadLimits(max_bytes=10))
    first = await new_sink(storage, budget)
    second = await new_sink(storage, budget)
    await first.write(b"123456")
    await first.finish(None)
    await second.write(b"1234")
    assert budget.used == 10
    with pytest.raises(UploadTooLarge):
        await second.write(b"5")
    await second.abort()
    assert await read_back(storage, first.writer.key) == b"123456"
    with pytest.raises(ObjectNotFound):
        await storage.head(second.writer.key)


def test_budget_counts() -> None:
    budget = ByteBudget(UploadLimits(max_bytes=5))
    budget.spend(0)
    budget.spend(5)
    assert budget.used == 5
    with pytest.raises(UploadTooLarge):
        budget.spend(1)


class FailingWriter(MemoryBlobWriter):
    """A memory writer whose storage gives out after `healthy` writes."""

    def __init__(self, storage: MemoryStorage, key: str, healthy: int) -> None:
        super().__init__(storage, key)
        self.healthy = healthy
        self.aborted = 0

    async def write(self, data: bytes) -> None:
        if self.healthy <= 0:
            raise StorageError("disk full")
        self.healthy -= 1
        await super().write(data)

    async def abort(self) -> None:
        self.aborted += 1
        await super().abort()


async def test_abort_after_a_failing_write_leaves_nothing() -> None:
    storage = MemoryStorage()
    writer = FailingWriter(storage, new_storage_key(), healthy=1)
    sink = BlobSink(writer, ByteBudget(UploadLimits(max_bytes=10 * len(DATA))))
    # The second batch fails in the background; the error surfaces on a later call.
    with pytest.raises(StorageError, match="disk full"):
        await upload(sink, DATA)
    await sink.abort()
    assert writer.aborted == 1
    await assert_empty(storage, writer.key)


async def test_failure_surfaces_on_finish() -> None:
    storage = MemoryStorage()
    writer = FailingWriter(storage, new_storage_key(), healthy=0)
    sink = BlobSink(writer, ByteBudget(UploadLimits(max_bytes=100)))
    await sink.write(b"small")  # buffered, not yet written
    with pytest.raises(StorageError):
        await sink.finish(None)
    await sink.abort()
    await assert_empty(storage, writer.key)


async def test_abort_with_a_batch_in_flight() -> None:
    storage = MemoryStorage()
    sink = await new_sink(storage)
    await sink.write(DATA[: BATCH_BYTES + 1])  # starts a batch in the background
    await sink.abort()
    await assert_empty(storage, sink.writer.key)


async def test_abort_twice_is_safe() -> None:
    storage = MemoryStorage()
    sink = await new_sink(storage)
    await sink.write(b"x")
    await sink.abort()
    await sink.abort()
    await assert_empty(storage, sink.writer.key)
