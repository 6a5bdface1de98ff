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
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

# A range is handed to the disk once this many bytes of it are written: big enough that
# a small upload never asks (it is fsynced whole at its commit), small enough that little
# is left for the fsync.
WRITEBACK_BYTES = 8 * 1024 * 1024
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


class Writeback:
    """Where one file's bytes written since the last hint start and end; call `wrote`
    after each write, in the thread that writes."""

    __slots__ = ("_end", "_start")

    def __init__(self, offset: int = 0) -> None:
        self._start = offset
        self._end = offset

    def wrote(self, fd: int, nbytes: int) -> None:
        self._end += nbytes
        if self._end - self._start >= WRITEBACK_BYTES:
            if _sync_file_range is not None:
                # The result is not checked: an error here is the fsync's to report.
                _sync_file_range(fd, self._start, self._end - self._start, _SYNC_FILE_RANGE_WRITE)
            self._start = self._end
