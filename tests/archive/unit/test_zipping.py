from __future__ import annotations

import asyncio
import gc
import hashlib
import io
import threading
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from filesvc.archive.zipping import Member, ZipArchive, member_names
from filesvc.storage.base import ByteRange, GetResult, ObjectMeta, ObjectNotFound
from filesvc.storage.local import LocalStorage
from filesvc.storage.memory import MemoryStorage

GiB = 1024**3


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["a.txt", "a.txt", "a.txt"], ["a.txt", "a (1).txt", "a (2).txt"]),
        (["A.txt", "a.txt"], ["A.txt", "a (1).txt"]),  # unzipped onto a case-blind disk
        (["a", "a"], ["a", "a (1)"]),
        ([".env", ".env"], [".env", ".env (1)"]),
        (["a.tar.gz", "a.tar.gz"], ["a.tar.gz", "a.tar (1).gz"]),
        (["../../etc/passwd"], [".._.._etc_passwd"]),
        (["dir\\file"], ["dir_file"]),
        ([".", ".."], ["_.", "_.."]),
        (["a (1).txt", "a.txt", "a.txt"], ["a (1).txt", "a.txt", "a (2).txt"]),
    ],
)
def test_member_names_are_unique_and_flat(names: list[str], expected: list[str]) -> None:
    assert member_names(names) == expected


class ZeroStorage(MemoryStorage):
    """Objects of any size, all zeros, without holding them: for archives past 4 GiB."""

    CHUNK = b"\0" * (8 * 1024 * 1024)

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    async def get(self, key: str, byte_range: ByteRange | None = None) -> GetResult:
        size = self.size

        async def chunks() -> AsyncIterator[bytes]:
            left = size
            while left:
                yield self.CHUNK[: min(left, len(self.CHUNK))]
                left -= min(left, len(self.CHUNK))

        meta = ObjectMeta(key=key, size=size, last_modified=None)  # type: ignore[arg-type]
        return GetResult(meta=meta, range=ByteRange(0, size), chunks=chunks())


class SparseZip(io.RawIOBase):
    """The archive as zipfile sees it: the bytes we kept at both ends, zeros between."""

    def __init__(self, head: bytes, tail: bytes, length: int) -> None:
        self.head, self.tail, self.length, self.position = head, tail, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.position, 2: self.length}[whence]
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        end = min(self.position + len(buffer), self.length)
        tail_start = self.length - len(self.tail)
        data = bytearray(end - self.position)
        for i in range(self.position, min(end, len(self.head))):
            data[i - self.position] = self.head[i]
        if end > tail_start:
            start = max(self.position, tail_start)
            data[start - self.position :] = self.tail[start - tail_start : end - tail_start]
        buffer[: len(data)] = data
        self.position = end
        return len(data)


async def test_members_over_4_gib_use_zip64() -> None:
    size = 4 * GiB + 1
    archive = ZipArchive(ZeroStorage(size), [Member("k", "huge.bin", size)])
    head, tail, length = bytearray(), bytearray(), 0
    async for chunk in archive.stream():
        length += len(chunk)
        if len(head) < 4096:
            head += chunk[: 4096 - len(head)]
        tail = (tail + chunk)[-8192:] if len(chunk) < 8192 else bytearray(chunk[-8192:])
    assert length == len(archive)
    with zipfile.ZipFile(SparseZip(bytes(head), bytes(tail), length)) as parsed:
        [info] = parsed.infolist()
        assert (info.filename, info.file_size, info.compress_type) == (
            "huge.bin",
            size,
            zipfile.ZIP_STORED,
        )
        assert info.extract_version >= 45  # zip64
        assert parsed.testzip() is None  # the CRC over all 4 GiB checks out


class ClosingStorage(ZeroStorage):
    """Zero objects whose readers record being closed, as a file handle would."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.closed = threading.Event()

    async def get(self, key: str, byte_range: ByteRange | None = None) -> GetResult:
        result = await super().get(key, byte_range)
        inner, closed = result.chunks, self.closed

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in inner:
                    yield chunk
            finally:
                closed.set()

        return GetResult(meta=result.meta, range=result.range, chunks=chunks())


async def test_an_archive_cancelled_mid_member_closes_the_member_and_frees_the_loop() -> None:
    # Starlette cancels the response's task group when the client goes; anyio then
    # cancels every later await in that scope too, the clean-up's included.
    storage = ClosingStorage(64 * 1024 * 1024)
    archive = ZipArchive(storage, [Member("k", "big.bin", storage.size)])
    received = 0
    with anyio.CancelScope() as scope:
        async for chunk in archive.stream():
            received += len(chunk)
            scope.cancel()
    assert 0 < received < len(archive)
    del archive
    gc.collect()  # a zip generator finalised here, on the loop, must not wait for the loop

    deadline = time.monotonic() + 10
    while not storage.closed.is_set():
        assert time.monotonic() < deadline, "the member's reader was never closed"
        await asyncio.sleep(0.01)  # the loop turns: it is not blocked


async def _stored(storage: LocalStorage, key: str, data: bytes) -> Member:
    writer = await storage.open_writer(key)
    await writer.write(data)
    await writer.commit()
    return Member(key, f"{key}.bin", len(data))


async def _streamed(archive: ZipArchive) -> bytes:
    return b"".join([chunk async for chunk in archive.stream()])


async def test_local_blobs_are_read_in_the_zip_threads_whole_and_in_order(
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path)
    blobs = {"a" * 32: random_bytes(3 * 1024 * 1024 + 1), "b" * 32: b"", "c" * 32: b"x"}
    members = [await _stored(storage, key, data) for key, data in blobs.items()]
    archive = ZipArchive(storage, members)
    body = await _streamed(archive)
    assert len(body) == len(archive)
    with zipfile.ZipFile(io.BytesIO(body)) as parsed:
        assert parsed.testzip() is None  # every member's CRC-32 checks out
        assert [info.filename for info in parsed.infolist()] == [m.name for m in members]
        for member, data in zip(members, blobs.values(), strict=True):
            read = parsed.read(member.name)
            assert hashlib.sha256(read).digest() == hashlib.sha256(data).digest()


async def test_a_local_blob_gone_from_disk_fails_the_archive(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    kept = await _stored(storage, "a" * 32, b"kept")
    gone = await _stored(storage, "b" * 32, b"gone")
    archive = ZipArchive(storage, [kept, gone])
    storage.local_path(gone.key).unlink()
    with pytest.raises(ObjectNotFound):
        await _streamed(archive)


async def test_a_local_blob_that_changed_size_fails_the_archive(tmp_path: Path) -> None:
    # The zip's length was announced from the row: a blob that no longer matches it must
    # end the response, never send an archive whose entries lie.
    storage = LocalStorage(tmp_path)
    member = await _stored(storage, "a" * 32, b"twelve bytes")
    storage.local_path(member.key).write_bytes(b"longer than twelve")
    with pytest.raises(RuntimeError, match="size"):
        await _streamed(ZipArchive(storage, [member]))


def random_bytes(size: int) -> bytes:
    return hashlib.shake_256(str(size).encode()).digest(size)
