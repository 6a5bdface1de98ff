"""Big files are handed to the disk while they are written, in whole ranges, in order, and
flushed in the background; small ones never (their commit's fsync writes them); the bytes
stay what was written; and a background flush that fails fails the commit, which then
leaves nothing behind."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import sys
from pathlib import Path

import pytest

from filesvc.storage import writeback
from filesvc.storage.base import StorageError
from filesvc.storage.local import LocalStorage
from filesvc.storage.writeback import FLUSH_BYTES, WRITEBACK_BYTES, Writeback
from filesvc.tus.local import LocalChunk

MIB = 1024 * 1024
KEY = "5b1e0c7a-2d4f-4a8e-9c3b-7f6e5d4c3b2a"

Range = tuple[int, int, int]  # (fd, offset, length)


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[Range]:
    """Every range handed to the disk; each still goes to the real call, which must
    accept it."""
    real = writeback._sync_file_range
    seen: list[Range] = []

    def record(fd: int, offset: int, length: int, flags: int) -> int:
        seen.append((fd, offset, length))
        if real is None:
            return 0
        result = real(fd, offset, length, flags)
        assert result == 0, os.strerror(ctypes.get_errno())
        return result

    monkeypatch.setattr(writeback, "_sync_file_range", record)
    return seen


@pytest.fixture
def flushed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The file's size at every background flush, each still made by the real call."""
    real = writeback._flush
    sizes: list[int] = []

    def record(fd: int) -> None:
        sizes.append(os.fstat(fd).st_size)
        real(fd)

    monkeypatch.setattr(writeback, "_flush", record)
    return sizes


@pytest.fixture
def failing_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every background flush meets a write error, as on a failing disk."""

    def fail(fd: int) -> None:
        os.close(fd)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(writeback, "_flush", fail)
    monkeypatch.setattr(writeback, "FLUSH_BYTES", 2 * MIB)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_the_real_call_is_found_on_linux() -> None:
    assert writeback._sync_file_range is not None


async def test_a_big_upload_is_handed_to_the_disk_in_whole_ranges_as_it_is_written(
    tmp_path: Path, handed: list[Range]
) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    hasher = hashlib.sha256()
    expected = hashlib.sha256()
    writer = await storage.open_writer(KEY)
    # 20 batches of 1 MiB less a byte: ranges end where the writes do, not on MiB marks.
    for number in range(20):
        batch = [bytes([number]) * (MIB // 2), bytes([number]) * (MIB // 2 - 1)]
        expected.update(b"".join(batch))
        await writer.write_hashed(batch, hasher)
    await writer.commit_hashed([], hasher, None)

    written = 20 * (MIB - 1)
    assert [length >= WRITEBACK_BYTES for _, _, length in handed] == [True, True]
    # Contiguous from the start, and never past what was written.
    assert handed[0][1] == 0
    assert handed[1][1] == handed[0][2]
    assert handed[1][1] + handed[1][2] <= written
    assert hasher.hexdigest() == expected.hexdigest()
    data = storage.local_path(KEY).read_bytes()
    assert hashlib.sha256(data).hexdigest() == expected.hexdigest()


async def test_a_big_upload_is_flushed_in_the_background_while_it_is_written(
    tmp_path: Path, flushed: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writeback, "FLUSH_BYTES", 4 * MIB)
    storage = LocalStorage(tmp_path / "blobs")
    hasher = hashlib.sha256()
    writer = await storage.open_writer(KEY)
    for number in range(20):
        await writer.write_hashed([bytes([number]) * MIB], hasher)
    await writer.commit_hashed([b"end"], hasher, None)

    # One flush in flight at a time, so how many depends on the disk; the first comes once
    # FLUSH_BYTES are written, and every one before the commit returns.
    assert 1 <= len(flushed) <= 5
    assert flushed[0] >= 4 * MIB
    expected = b"".join(bytes([number]) * MIB for number in range(20)) + b"end"
    assert storage.local_path(KEY).read_bytes() == expected
    assert hasher.hexdigest() == hashlib.sha256(expected).hexdigest()
    assert list(storage.tmp_dir.iterdir()) == []


async def test_a_small_upload_is_left_to_its_fsync(
    tmp_path: Path, handed: list[Range], flushed: list[int]
) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    hasher = hashlib.sha256()
    writer = await storage.open_writer(KEY)
    for _ in range(7):
        await writer.write_hashed([b"x" * MIB], hasher)
    await writer.commit_hashed([b"y" * (MIB - 1)], hasher, None)

    assert handed == []
    assert flushed == []
    assert storage.local_path(KEY).stat().st_size == 8 * MIB - 1
    assert 8 * MIB < FLUSH_BYTES


async def test_a_failed_background_flush_fails_the_commit_and_leaves_nothing(
    tmp_path: Path, failing_flush: None
) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    hasher = hashlib.sha256()
    writer = await storage.open_writer(KEY)
    for _ in range(4):
        await writer.write_hashed([b"x" * MIB], hasher)

    # The fsync after a failed flush may well succeed: the kernel reports a write error to
    # one fsync of the file only. The commit must fail anyway, before the link.
    with pytest.raises(StorageError, match="Input/output error"):
        await writer.commit_hashed([b"y"], hasher, None)

    assert not storage.local_path(KEY).exists()
    assert list(storage.tmp_dir.iterdir()) == []


async def test_a_failed_background_flush_fails_the_tus_chunk(
    tmp_path: Path, failing_flush: None
) -> None:
    path = tmp_path / "upload.part"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    chunk = LocalChunk(fd, 0, "upload")
    for _ in range(4):
        await chunk.write([b"x" * MIB], [hashlib.sha256()])

    with pytest.raises(StorageError, match="Input/output error"):
        await chunk.keep(final=False)
    await chunk.discard()
    assert path.stat().st_size == 0


def test_the_error_a_flush_meets_is_raised_by_settle() -> None:
    """A pipe cannot be flushed: the kernel's own EINVAL, from the flush's thread."""
    read_end, write_end = os.pipe()
    try:
        tracked = Writeback()
        tracked.wrote(write_end, FLUSH_BYTES)
        with pytest.raises(OSError, match="Invalid argument") as raised:
            tracked.settle()
        assert raised.value.errno == errno.EINVAL
        tracked.settle()  # reported once; nothing left in flight
    finally:
        os.close(read_end)
        os.close(write_end)


async def test_a_resumed_tus_upload_hands_ranges_from_where_it_resumes(
    tmp_path: Path, handed: list[Range]
) -> None:
    path = tmp_path / "upload.part"
    start = 3 * MIB + 5
    path.write_bytes(b"a" * start)
    fd = os.open(path, os.O_RDWR)
    os.lseek(fd, start, os.SEEK_SET)
    chunk = LocalChunk(fd, start, "upload")
    hasher = hashlib.sha256()
    for _ in range(9):
        await chunk.write([b"b" * (MIB // 2), b"b" * (MIB // 2)], [hasher])
    await chunk.keep(final=True)

    assert [(offset, length) for _, offset, length in handed] == [(start, WRITEBACK_BYTES)]
    assert path.read_bytes() == b"a" * start + b"b" * 9 * MIB
    assert hasher.hexdigest() == hashlib.sha256(b"b" * 9 * MIB).hexdigest()
