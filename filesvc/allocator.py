"""Keep the server's memory flat: multi-MiB buffers (S3 parts) go back to the OS when freed."""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers
M_MMAP_THRESHOLD = -3
# Above the 1 MiB blocks that uploads and downloads churn through (kept on the heap, where
# reusing them costs nothing), below the 5+ MiB S3 parts (each its own mapping).
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
# Fixing one threshold freezes the other at its 128 KiB default, which would hand the heap
# top back to the OS after nearly every 1 MiB block and fault it in again: keep 32 MiB.
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024


def return_big_buffers_to_the_os() -> None:
    """Fix glibc's malloc thresholds instead of letting them float.

    Left dynamic, glibc raises the mmap threshold (up to 32 MiB) the first time a mapped
    buffer is freed; from then on the 8 MiB parts of S3 uploads come from arenas that keep
    their pages, and the resident set grows with every part and thread (measured: +60 MiB
    after one 512 MiB upload to S3, a peak of 197 MiB in `make bench`; fixed: about 165).
    Fixed at the values above, the local backend's figures are unchanged (same benchmark).
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
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
