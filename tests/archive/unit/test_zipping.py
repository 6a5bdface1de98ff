from __future__ import annotations

import asyncio
import gc
import io
import threading
import time
import zipfile
from collections.abc import AsyncIterator

import anyio
import pytest

from filesvc.archive.zipping import Member, ZipArchive, member_names
from filesvc.storage.base import ByteRange, GetResult, ObjectMeta
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
