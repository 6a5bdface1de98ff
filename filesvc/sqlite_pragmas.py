"""The settings every SQLite connection of filesvc runs with (db.py's pool, loop_writes.py)."""

from __future__ import annotations

from typing import Any

# How long a statement waits for another connection's write lock before failing.
BUSY_TIMEOUT_MS = 10_000


def apply_pragmas(dbapi_connection: Any, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer; busy_timeout waits for the lock
    # instead of failing at once when two requests write together. synchronous=FULL
    # fsyncs the WAL at every commit: with NORMAL, the last commits before a power loss or
    # an OS crash roll back, and a 201 promises a durable row (uploads share that cost
    # through group_commit.py).
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    # WAL is kept in the file (`filesvc migrate` sets it): switch only a file that is not
    # in WAL yet, since a switch takes an exclusive lock.
    cursor.execute("PRAGMA journal_mode")
    if cursor.fetchone()[0] != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
