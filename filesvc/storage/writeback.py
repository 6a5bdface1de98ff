"""Start the disk writing a big file's bytes while the rest of it is still arriving.

The kernel keeps written pages in the page cache and writes them out on its own only past
`vm.dirty_background_ratio` of memory (10 % by default: gigabytes on most servers), or
after 30 seconds. A 1 GiB upload would then be received into memory first and written to
disk only by its closing fsync, the two one after the other. `sync_file_range` with
SYNC_FILE_RANGE_WRITE asks the kernel to start writing a range now, without waiting for
it, so the disk works while the socket still delivers, and the fsync before the commit
finds little left (measured here: 1 GiB in 0.5 s of writes then 0.5 s of fsync, or 0.55 s
of writes and no fsync wait). PostgreSQL (`*_flush_after`) and RocksDB (`bytes_per_sync`)
do the same. It is only a hint: the fsync still makes the file durable and reports any
error, so a failed or missing `sync_file_range` changes nothing but the speed.

Written out is not yet durable where the disk has a volatile write cache: a virtual disk
whose host keeps the writes in its own page cache, most SSDs. The fsync then also makes the
disk flush that cache (ext4: `blkdev_issue_flush`), and the flush costs what the cache
holds. Measured on a VM here: 1 GiB uploaded at 290-320 MB/s, of which 1.2 s was the
closing fsync's flush with the disk idle, while the bytes had gone out during the upload.
So every FLUSH_BYTES, a thread of its own flushes the file so far (fdatasync) while the
upload goes on, one flush in flight per file, and the closing fsync finds only the tail
left: 400-500 MB/s, as fast as `dd conv=fsync` on that disk. Unlike the hint above, a
flush can fail, and the kernel reports a write error to one fsync of the file only, so
`settle` hands its error to the commit, before anything becomes visible.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import sys
from collections.abc import Callable

# A range is handed to the disk once this many bytes of it are written: big enough that
# a small upload never asks (it is fsynced whole at its commit), small enough that little
# is left for the fsync.
WRITEBACK_BYTES = 8 * 1024 * 1024
# Past this many bytes since the last flush, the file is flushed again in the background;
# never for a file smaller. Measured here (`make bench --tus-only`): 16 MiB left a 64 MiB
# tus chunk's fsync the least to flush (353-426 MB/s, against 266-282 with none, 257-287 with
# 64 MiB and 323-357 with 8 MiB, whose flushes hold up the writes more often), and a 1 GiB
# upload as fast as any (402-498 MB/s).
FLUSH_BYTES = 16 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of dirty pages, don't wait


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        # A CDLL call lets go of the GIL, as os.write does.
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()
# Flushes wait for the disk, not the CPU; a file past these waits its turn, still uploading.
_flush_threads = concurrent.futures.ThreadPoolExecutor(4, "filesvc-flush")


def _flush(fd: int) -> None:
    """fdatasync, then close: `fd` is the flush's own duplicate of the writer's, so the
    writer may close its own at any time (abort) without waiting for the disk."""
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


class Writeback:
    """Where one file's bytes written since the last hint start and end, and its flush in
    the background; call `wrote` after each write and `settle` before the file's fsync,
    both in the thread that writes."""

    __slots__ = ("_end", "_flushed", "_flushing", "_start")

    def __init__(self, offset: int = 0) -> None:
        self._start = offset
        self._end = offset
        self._flushed = offset
        self._flushing: concurrent.futures.Future[None] | None = None

    def wrote(self, fd: int, nbytes: int) -> None:
        self._end += nbytes
        if self._end - self._start >= WRITEBACK_BYTES:
            if _sync_file_range is not None:
                # The result is not checked: an error here is the fsync's to report.
                _sync_file_range(fd, self._start, self._end - self._start, _SYNC_FILE_RANGE_WRITE)
            self._start = self._end
        if self._end - self._flushed >= FLUSH_BYTES and self._flush_done():
            try:
                own = os.dup(fd)
            except OSError:  # out of descriptors: the closing fsync flushes it all anyway
                return
            self._flushing = _flush_threads.submit(_flush, own)
            self._flushed = self._end

    def _flush_done(self) -> bool:
        """No flush in flight; one that failed stays, for `settle` to report."""
        flushing = self._flushing
        return flushing is None or (flushing.done() and flushing.exception() is None)

    def settle(self) -> None:
        """Wait for the flush in flight, if any, and raise the OSError it met: the fsync
        that follows would not see it again."""
        flushing, self._flushing = self._flushing, None
        if flushing is not None:
            flushing.result()
