"""Big files are handed to the disk while they are written, in whole ranges, in order; small
ones never (their commit's fsync writes them); and the bytes stay what was written."""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
from pathlib import Path

import pytest

from filesvc.storage import writeback
from filesvc.storage.local import LocalStorage
from filesvc.storage.writeback import WRITEBACK_BYTES
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


async def test_a_small_upload_is_left_to_its_fsync(tmp_path: Path, handed: list[Range]) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    hasher = hashlib.sha256()
    writer = await storage.open_writer(KEY)
    for _ in range(7):
        await writer.write_hashed([b"x" * MIB], hasher)
    await writer.commit_hashed([b"y" * (MIB - 1)], hasher, None)

    assert handed == []
    assert storage.local_path(KEY).stat().st_size == 8 * MIB - 1


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
