"""The group commit's PostgreSQL statements (group_commit.py), on a connection of its own.

Through a pooled session, a group of small uploads cost a session, a pool checkout and
four round trips (BEGIN, two INSERTs, COMMIT), each through SQLAlchemy's execution layers
and a greenlet switch: about a fifth of the event loop's time under 4 KiB uploads
(py-spy). Here a group is one statement (files/inserts.py writes both tables' rows in one
data-modifying WITH), which PostgreSQL runs as a transaction of its own and commits, WAL
flush included, before it answers: one round trip, on a connection in autocommit that
nothing else uses. The group commit runs one group at a time, so one connection is
enough; a lost one is replaced on the next call.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from filesvc.group_commit import RowsRefused
from filesvc.point_reads import CONNECTION_LOST, asyncpg_connect_args


class PostgresWriter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._connect = asyncpg_connect_args(engine)
        self._connection: asyncpg.Connection | None = None

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run one statement (its own transaction) and return its rows once committed.

        RowsRefused if PostgreSQL refused it: it rolled back whole. Any other error (the
        connection lost, cancelled mid-statement) leaves its outcome unknown, and the next
        call starts on a new connection."""
        connection = await self._connected()
        try:
            rows: list[asyncpg.Record] = await connection.fetch(sql, *args)
        except asyncpg.PostgresError as exc:
            if not isinstance(exc, CONNECTION_LOST):
                raise RowsRefused() from exc
            self._forget()
            raise
        except BaseException:
            self._forget()
            raise
        return rows

    async def execute(self, sql: str, *args: Any) -> None:
        await self.fetch(sql, *args)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def _connected(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            args, kwargs = self._connect
            self._connection = await asyncpg.connect(*args, **kwargs)
        return self._connection

    def _forget(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()
