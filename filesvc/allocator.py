"""Keep the server's memory flat: MiB-sized transfer buffers go back to the OS when freed."""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value


def return_big_buffers_to_the_os() -> None:
    """Fix glibc's mmap threshold at its default.

    Left dynamic, glibc raises it (up to 32 MiB) the first time a mapped buffer is freed;
    from then on the 1 to 8 MiB buffers of uploads, downloads and S3 parts come from
    per-thread arenas that keep their pages, and the resident set grows with every thread
    that ever moved bytes (measured: +60 MiB after one 512 MiB upload to S3). Fixed, each
    such buffer is its own mapping, unmapped when freed, at the cost of a page fault per
    4 KiB touched.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return  # not glibc
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
