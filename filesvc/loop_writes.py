"""The group commit's SQLite transactions on the event loop (group_commit.py).

Through the engine's pool (aiosqlite) every statement is three or four thread hops
(cursor, execute, fetch, close), and under load each hop waits for the busy event loop
and for the GIL: a group of small uploads' two INSERTs and its COMMIT took about 10 ms,
which every upload of the group waited for. Here the group commit has a connection of its
own. BEGIN IMMEDIATE and the statements run on the loop, as point reads do
(point_reads.py): once the write lock is held they never wait, and they are the same
Python the session ran on the loop before (0.6 ms for one upload, about 2 ms for a group
of five under load), without the hops. Only the COMMIT, whose WAL fsync waits for the disk,
runs in a thread: one hop. Under load (4 KiB PUTs, 16 at a time) a group took about
6.5 ms instead of 10 to 12.

BEGIN IMMEDIATE does not block the loop either (busy_timeout 0): while another
connection holds the write lock (a PATCH, a tus chunk, another worker's group), `begin`
tries again every few milliseconds, and the loop serves other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.pool import StaticPool

from filesvc import thread_jobs
from filesvc.sqlite_pragmas import BUSY_TIMEOUT_MS, apply_pragmas

# What SQLite answers when another connection holds the lock BEGIN IMMEDIATE asks for.
_LOCKED = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
# How soon BEGIN is tried again while the lock is held, doubling up to the maximum. SQLite's
# own busy handler sleeps up to 100 ms between tries: a process that commits group after
# group (another worker's group commit) took the lock again each time before it woke.
RETRY_SECONDS = 0.0005
MAX_RETRY_SECONDS = 0.002


class SqliteLoopWriter:
    """One connection, one transaction at a time (the group commit's one runner)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._open: _Open | None = None
        # The COMMITs' own thread: one at a time, and never behind other jobs.
        self._thread = thread_jobs.JobThreads(1, "filesvc-commit")

    async def begin(self) -> Connection:
        """The connection in a new write transaction, once the write lock is free.

        While another connection holds it, BEGIN is tried again every few milliseconds
        and the loop serves other requests meanwhile; after the pool's busy timeout it
        fails as the pool's statements do ("database is locked")."""
        if self._open is None:
            self._open = _Open.connect(self._path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUSY_TIMEOUT_MS / 1000
        delay = RETRY_SECONDS
        while True:
            try:
                self._open.raw.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                locked = isinstance(exc, sqlite3.OperationalError) and (
                    exc.sqlite_errorcode in _LOCKED
                )
                if not locked or loop.time() >= deadline:
                    raise as_sqlalchemy_error("BEGIN IMMEDIATE", exc) from exc
            else:
                return self._open.connection
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    async def commit(self) -> None:
        """COMMIT, with the WAL's fsync, in a thread; rolled back if it fails."""
        open_ = self._connected()
        running, outcome = thread_jobs.submit(self._thread, lambda: _commit(open_.raw))
        try:
            await outcome
        except asyncio.CancelledError:
            # The COMMIT goes on in its thread: nothing else may use the connection first.
            await thread_jobs.finished(running)
            self.rollback()
            raise
        except BaseException as exc:
            self.rollback()
            if isinstance(exc, sqlite3.Error):
                raise as_sqlalchemy_error("COMMIT", exc) from exc
            raise
        open_.connection.commit()  # ends SQLAlchemy's own (autocommit) transaction

    def rollback(self) -> None:
        open_ = self._connected()
        if open_.raw.in_transaction:
            open_.raw.execute("ROLLBACK")
        open_.connection.rollback()

    def close(self) -> None:
        self._thread.shutdown()
        if self._open is not None:
            self._open.close()
            self._open = None

    def _connected(self) -> _Open:
        if self._open is None:
            raise RuntimeError("no transaction: begin() first")
        return self._open


def _commit(raw: sqlite3.Connection) -> None:
    raw.execute("COMMIT")


def as_sqlalchemy_error(statement: str, exc: sqlite3.Error) -> StatementError:
    """A `sqlite3` error as the engine's statements raise it (IntegrityError,
    OperationalError, …)."""
    return DBAPIError.instance(statement, None, exc, sqlite3.Error)


@dataclass(frozen=True, slots=True)
class _Open:
    raw: sqlite3.Connection
    engine: Engine
    connection: Connection  # SQLAlchemy's, on `raw`, for the statements

    @classmethod
    def connect(cls, path: str) -> _Open:
        # Autocommit (isolation_level=None): the transactions are the BEGIN and COMMIT
        # above. check_same_thread=False: the COMMIT runs in a thread, never beside
        # anything else on this connection.
        raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        apply_pragmas(raw, busy_timeout_ms=0)  # else the pool's: WAL, synchronous=FULL, …
        engine = create_engine("sqlite://", creator=lambda: raw, poolclass=StaticPool)
        connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return cls(raw, engine, connection)

    def close(self) -> None:
        self.connection.close()
        self.engine.dispose()
        self.raw.close()
