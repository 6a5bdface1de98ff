"""The storage contract: every backend in conftest.BACKENDS must pass all of it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from filesvc.storage.base import (
    ByteRange,
    InvalidKey,
    ObjectAlreadyExists,
    ObjectMeta,
    ObjectNotFound,
    PendingWrite,
    Storage,
    StorageError,
    validate_key,
)
from filesvc.storage.local import LocalStorage

CHUNK = 64 * 1024
# Over the local backend's 1 MiB read size and not a multiple of anything.
BIG = os.urandom(2 * 1024 * 1024 + 12345)


async def put(storage: Storage, key: str, data: bytes, chunk: int = CHUNK) -> ObjectMeta:
    writer = await storage.open_writer(key)
    try:
        for i in range(0, len(data), chunk):
            await writer.write(data[i : i + chunk])
        return await writer.commit()
    except BaseException:
        await writer.abort()
        raise


async def read(storage: Storage, key: str, byte_range: ByteRange | None = None) -> bytes:
    result = await storage.get(key, byte_range)
    try:
        return b"".join([chunk async for chunk in result.chunks])
    finally:
        await result.aclose()


async def keys(storage: Storage, prefix: str = "") -> list[str]:
    return [meta.key async for meta in storage.list(prefix)]


def files_on_disk(storage: Storage) -> list[str]:
    """Everything a backend left on disk, temp files included (local backend only)."""
    if not isinstance(storage, LocalStorage) or not storage.root.exists():
        return []
    return sorted(str(p.relative_to(storage.root)) for p in storage.root.rglob("*") if p.is_file())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_write_in_chunks_then_commit(storage: Storage) -> None:
    meta = await put(storage, "blob-1", BIG)

    assert meta.key == "blob-1"
    assert meta.size == len(BIG)
    assert meta.last_modified.tzinfo is not None
    head = await storage.head("blob-1")
    assert head.size == len(BIG)
    assert head.last_modified.utcoffset() == UTC.utcoffset(None)
    result = await storage.get("blob-1")
    assert result.meta.size == len(BIG)
    assert result.range == ByteRange(0, len(BIG))
    await result.aclose()
    assert sha256(await read(storage, "blob-1")) == sha256(BIG)


async def test_nothing_visible_before_commit(storage: Storage) -> None:
    writer = await storage.open_writer("pending")
    await writer.write(b"hello")

    with pytest.raises(ObjectNotFound):
        await storage.head("pending")
    with pytest.raises(ObjectNotFound):
        await storage.get("pending")
    assert await keys(storage) == []

    await writer.write(b" world")
    await writer.commit()
    assert await read(storage, "pending") == b"hello world"
    assert await keys(storage) == ["pending"]


async def test_abort_leaves_nothing(storage: Storage) -> None:
    writer = await storage.open_writer("aborted")
    await writer.write(b"partial data")
    await writer.abort()
    await writer.abort()

    with pytest.raises(ObjectNotFound):
        await storage.head("aborted")
    assert await keys(storage) == []
    assert files_on_disk(storage) == []


async def test_abort_without_writing(storage: Storage) -> None:
    writer = await storage.open_writer("never-written")
    await writer.abort()
    await writer.abort()

    assert await keys(storage) == []
    assert files_on_disk(storage) == []


async def test_closed_writer_refuses_more(storage: Storage) -> None:
    aborted = await storage.open_writer("k-aborted")
    await aborted.abort()
    with pytest.raises(StorageError):
        await aborted.write(b"x")
    with pytest.raises(StorageError):
        await aborted.commit()

    committed = await storage.open_writer("k-committed")
    await committed.write(b"data")
    await committed.commit()
    with pytest.raises(StorageError):
        await committed.write(b"more")
    with pytest.raises(StorageError):
        await committed.commit()


async def test_abort_after_commit_keeps_the_object(storage: Storage) -> None:
    writer = await storage.open_writer("kept")
    await writer.write(b"data")
    await writer.commit()
    await writer.abort()

    assert await read(storage, "kept") == b"data"


async def test_create_only(storage: Storage) -> None:
    first = await storage.open_writer("taken")
    second = await storage.open_writer("taken")
    await first.write(b"original")
    await second.write(b"intruder, and longer")
    await first.commit()

    with pytest.raises(ObjectAlreadyExists) as excinfo:
        await second.commit()
    assert excinfo.value.key == "taken"
    await second.abort()

    assert await read(storage, "taken") == b"original"
    assert (await storage.head("taken")).size == len(b"original")
    assert await keys(storage) == ["taken"]
    if isinstance(storage, LocalStorage):
        final = storage.local_path("taken").relative_to(storage.root)
        assert files_on_disk(storage) == [str(final)]


async def test_create_only_against_an_existing_object(storage: Storage) -> None:
    await put(storage, "existing", b"first")

    with pytest.raises(ObjectAlreadyExists):
        await put(storage, "existing", b"second")
    assert await read(storage, "existing") == b"first"


async def test_key_can_be_reused_after_delete(storage: Storage) -> None:
    await put(storage, "again", b"one")
    await storage.delete("again")
    await put(storage, "again", b"two")

    assert await read(storage, "again") == b"two"


async def test_interleaved_writers(storage: Storage) -> None:
    a = await storage.open_writer("a-key")
    b = await storage.open_writer("b-key")
    for i in range(5):
        await a.write(b"a%d" % i)
        await b.write(b"b%d" % i)
    await b.commit()
    await a.commit()

    assert await read(storage, "a-key") == b"a0a1a2a3a4"
    assert await read(storage, "b-key") == b"b0b1b2b3b4"


@pytest.mark.parametrize(
    "key_set",
    [
        pytest.param(["a", "ab", "abc", "abab", "ababab"], id="shared-prefixes"),
        pytest.param(["ab", "ab.", "ab.c", "a.b", "ab-_"], id="punctuation"),
    ],
)
async def test_short_and_overlapping_keys_are_independent(
    storage: Storage, key_set: list[str]
) -> None:
    for key in key_set:
        await put(storage, key, key.encode() * 3)
    for key in key_set:
        assert await read(storage, key) == key.encode() * 3
    assert await keys(storage) == sorted(key_set)

    await storage.delete(key_set[0])
    assert await keys(storage) == sorted(key_set[1:])


async def test_longest_key(storage: Storage) -> None:
    key = "k" * 255
    await put(storage, key, b"x")
    assert await read(storage, key) == b"x"


DATA = bytes(range(256)) * 4  # 1024 bytes, every offset distinguishable
N = len(DATA)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(0, 10, id="start"),
        pytest.param(100, 300, id="middle"),
        pytest.param(N - 10, N, id="end"),
        pytest.param(0, N, id="whole"),
        pytest.param(N - 10, N + 100, id="past-the-end"),
        pytest.param(N - 1, N, id="last-byte"),
        pytest.param(N, N + 10, id="at-the-size"),
        pytest.param(N + 5, N + 10, id="beyond-the-size"),
        pytest.param(7, 7, id="empty"),
    ],
)
async def test_get_range(storage: Storage, start: int, end: int) -> None:
    await put(storage, "ranged", DATA, chunk=100)

    result = await storage.get("ranged", ByteRange(start, end))
    await result.aclose()
    expected = DATA[start:end]
    clamped = ByteRange(min(start, N), min(end, N))
    assert result.range == clamped
    assert result.range.length == len(expected)
    assert result.meta.size == N
    assert await read(storage, "ranged", ByteRange(start, end)) == expected


async def test_get_range_of_big_object(storage: Storage) -> None:
    await put(storage, "big", BIG)
    start, end = 1024 * 1024 - 3, 2 * 1024 * 1024 + 7

    data = await read(storage, "big", ByteRange(start, end))
    assert sha256(data) == sha256(BIG[start:end])


@pytest.mark.parametrize(
    "byte_range", [None, ByteRange(0, 0), ByteRange(0, 10), ByteRange(3, 10)], ids=str
)
async def test_empty_object(storage: Storage, byte_range: ByteRange | None) -> None:
    meta = await put(storage, "empty", b"")
    assert meta.size == 0
    assert (await storage.head("empty")).size == 0

    result = await storage.get("empty", byte_range)
    await result.aclose()
    assert result.range == ByteRange(0, 0)
    assert await read(storage, "empty", byte_range) == b""
    assert await keys(storage) == ["empty"]


async def test_get_result_can_be_closed_unread(storage: Storage) -> None:
    await put(storage, "unread", b"some bytes")

    result = await storage.get("unread")
    await result.aclose()
    await result.aclose()

    assert await read(storage, "unread") == b"some bytes"


async def test_missing_key(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound) as excinfo:
        await storage.head("missing")
    assert excinfo.value.key == "missing"
    with pytest.raises(ObjectNotFound):
        await storage.get("missing")
    with pytest.raises(ObjectNotFound):
        await storage.get("missing", ByteRange(0, 10))


async def test_delete(storage: Storage) -> None:
    await put(storage, "doomed", b"bytes")
    await put(storage, "survivor", b"bytes")

    await storage.delete("doomed")

    with pytest.raises(ObjectNotFound):
        await storage.head("doomed")
    with pytest.raises(ObjectNotFound):
        await storage.get("doomed")
    assert await keys(storage) == ["survivor"]
    await storage.delete("doomed")


async def test_delete_missing_key_is_fine(storage: Storage) -> None:
    await storage.delete("never-existed")


async def test_list_with_prefix(storage: Storage) -> None:
    for key, size in [("img-2", 2), ("doc-1", 10), ("img-1", 1), ("img-10", 3), ("imgx", 4)]:
        await put(storage, key, b"x" * size)
    pending = await storage.open_writer("img-3")
    await pending.write(b"not yet")

    assert await keys(storage) == ["doc-1", "img-1", "img-10", "img-2", "imgx"]
    assert await keys(storage, "img-") == ["img-1", "img-10", "img-2"]
    assert await keys(storage, "img-1") == ["img-1", "img-10"]
    assert await keys(storage, "doc-1") == ["doc-1"]
    assert await keys(storage, "zzz") == []
    assert await keys(storage, "../") == []
    sizes = {meta.key: meta.size async for meta in storage.list("img")}
    assert sizes == {"img-1": 1, "img-10": 3, "img-2": 2, "imgx": 4}
    await pending.abort()


async def test_list_while_deleting(storage: Storage) -> None:
    for i in range(5):
        await put(storage, f"item-{i}", b"x")

    async for meta in storage.list():
        await storage.delete(meta.key)
    assert await keys(storage) == []


async def test_list_empty_storage(storage: Storage) -> None:
    assert await keys(storage) == []


async def test_check(storage: Storage) -> None:
    await storage.check()
    assert isinstance(storage.name, str)
    assert storage.name


INVALID_KEYS = ["../x", "a/b", "", ".hidden", "a\x00b", "..", "a..b", "a\\b", "a b", "k" * 256]


async def _open(storage: Storage, key: str) -> object:
    return await storage.open_writer(key)


async def _get(storage: Storage, key: str) -> object:
    return await storage.get(key)


async def _get_range(storage: Storage, key: str) -> object:
    return await storage.get(key, ByteRange(0, 1))


async def _head(storage: Storage, key: str) -> object:
    return await storage.head(key)


async def _delete(storage: Storage, key: str) -> object:
    await storage.delete(key)
    return None


OPERATIONS: dict[str, Callable[[Storage, str], Awaitable[object]]] = {
    "open_writer": _open,
    "get": _get,
    "get_range": _get_range,
    "head": _head,
    "delete": _delete,
}


@pytest.mark.parametrize("key", INVALID_KEYS, ids=repr)
@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_invalid_key(storage: Storage, operation: str, key: str) -> None:
    with pytest.raises(InvalidKey):
        await OPERATIONS[operation](storage, key)
    assert await keys(storage) == []
    assert files_on_disk(storage) == []


@pytest.mark.parametrize("key", INVALID_KEYS, ids=repr)
def test_validate_key_rejects(key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)
    # InvalidKey is a ValueError too, for callers that only know the standard errors.
    with pytest.raises(ValueError, match="invalid storage key"):
        validate_key(key)


@pytest.mark.parametrize("key", ["a", "0", "3f2a9c4e-1b7d-4c1e-9a55-0d3c2b1a0f9e", "a.b_c-d"])
def test_validate_key_accepts(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(("start", "end"), [(-1, 5), (5, 4), (-3, -1)])
def test_byte_range_rejects_nonsense(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="byte range"):
        ByteRange(start, end)


# Past one part of the S3 backend under test (5 MiB): its write is a multipart upload.
UNFINISHED = os.urandom(6 * 1024 * 1024)


async def pending_writes(storage: Storage) -> list[PendingWrite]:
    return [pending async for pending in storage.pending_writes()]


async def test_pending_writes_are_the_unfinished_ones(storage: Storage) -> None:
    await put(storage, "done", b"committed")
    aborted = await storage.open_writer("aborted")
    await aborted.write(UNFINISHED)
    await aborted.abort()
    writer = await storage.open_writer("unfinished")
    await writer.write(UNFINISHED)

    [pending] = await pending_writes(storage)
    assert pending.key in (None, "unfinished")  # local temp files do not know their key
    assert 0 <= pending.size <= len(UNFINISHED)
    assert pending.last_activity.tzinfo is not None
    assert abs((datetime.now(UTC) - pending.last_activity).total_seconds()) < 300

    await writer.commit()
    assert await pending_writes(storage) == []
    assert await keys(storage) == ["done", "unfinished"]


async def test_discard_pending_write(storage: Storage) -> None:
    writer = await storage.open_writer("victim")
    await writer.write(UNFINISHED)
    [pending] = await pending_writes(storage)

    if await storage.discard_pending(pending):
        # Gone, and its writer can no longer make it an object.
        assert await pending_writes(storage) == []
        with pytest.raises(StorageError):
            await writer.commit()
        assert await keys(storage) == []
    else:
        # The backend saw its writer still holds it: untouched.
        assert [p.id for p in await pending_writes(storage)] == [pending.id]
        await writer.commit()
        assert await keys(storage) == ["victim"]
    assert await pending_writes(storage) == []
