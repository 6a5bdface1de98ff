"""Random ids without a system call each.

`uuid.uuid4()` reads 16 bytes with getrandom(), and CPython lets go of the GIL around that
call: on a busy event loop, taking it back waits for the threads (disk jobs, database
drivers) that took it meanwhile, several times per request. Here the bytes still come
from os.urandom, a pool of them at a time; a forked child starts a pool of its own.
"""

from __future__ import annotations

import os
import threading

POOL_BYTES = 4096

_lock = threading.Lock()
_pool = b""
_taken = 0


def _reset() -> None:
    global _pool, _taken
    _pool, _taken = b"", 0


os.register_at_fork(after_in_child=_reset)


def random_bytes(count: int) -> bytes:
    """`count` (at most POOL_BYTES) bytes from the operating system's CSPRNG."""
    global _pool, _taken
    with _lock:
        if _taken + count > len(_pool):
            _pool, _taken = os.urandom(POOL_BYTES), 0
        start, _taken = _taken, _taken + count
        return _pool[start:_taken]


def uuid4_hex() -> str:
    """`uuid.uuid4().hex` from the pool, without a UUID object (whose checks cost more than
    the rest): the version and variant bits set as RFC 4122 has them."""
    raw = bytearray(random_bytes(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return raw.hex()


def uuid4_str() -> str:
    """`str(uuid.uuid4())` from the pool, without a UUID object."""
    h = uuid4_hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
