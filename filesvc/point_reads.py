"""Rows by primary key in one step of the driver, for the routes every request takes.

An ORM `session.get` costs a session, a pooled connection, a statement cache key and, on
aiosqlite, five thread hops (cursor, execute, fetch, close, the rollback on check-in):
about a millisecond of CPU for one row, most of a small request. Here each model's
statement is compiled once, and a read is

- on SQLite, one statement on a connection of this reader's own, on the event loop: in
  WAL mode a reader never waits for writers and a primary-key read takes a few
  microseconds, less than one thread hop. It has no busy timeout, so in the rare case
  where it would wait (a WAL being recovered) it goes through the pool instead;
- on PostgreSQL, one statement on a pooled connection (asyncpg needs no thread).

Values pass through the columns' own result processors, so a row read here equals what
the ORM would load. The object is a transient copy: read it, never add it to a session
(load the row in your session to change it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import bindparam, inspect, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase

ModelT = TypeVar("ModelT", bound=DeclarativeBase)


class _Statement:
    """One model's primary-key SELECT in the dialect's SQL, and how to make its rows
    into objects."""

    def __init__(self, model: type[DeclarativeBase], dialect: Dialect) -> None:
        mapper = inspect(model)
        table = mapper.local_table
        [key] = mapper.primary_key
        query = select(table).where(key == bindparam("pk"))
        compiled = query.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positional = compiled.positiontup is not None
        self.model = model
        # (attribute name, converter) per selected column, in order.
        self.fields: list[tuple[str, Callable[[Any], Any] | None]] = [
            (
                mapper.get_property_by_column(column).key,
                column.type.dialect_impl(dialect).result_processor(dialect, None),
            )
            for column in table.columns
        ]

    def params(self, pk: object) -> Sequence[object] | dict[str, object]:
        return (pk,) if self.positional else {"pk": pk}

    def build(self, row: Sequence[Any]) -> DeclarativeBase:
        values = {
            name: value if convert is None or value is None else convert(value)
            for (name, convert), value in zip(self.fields, row, strict=True)
        }
        return self.model(**values)


class PointReads:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._statements: dict[type[DeclarativeBase], _Statement] = {}
        url = engine.url
        self._sqlite_path = url.database if url.get_backend_name() == "sqlite" else None
        self._sqlite: sqlite3.Connection | None = None

    async def get(self, model: type[ModelT], pk: object) -> ModelT | None:
        statement = self._statements.get(model)
        if statement is None:
            statement = self._statements[model] = _Statement(model, self._engine.dialect)
        params = statement.params(pk)
        rows: Sequence[Sequence[Any]] | None = None
        if self._sqlite_path is not None:
            rows = self._read_sqlite_now(statement.sql, params)
        if rows is None:
            async with self._engine.connect() as connection:
                result = await connection.exec_driver_sql(statement.sql, params)
                rows = result.all()
        if not rows:
            return None
        obj = statement.build(rows[0])
        assert isinstance(obj, model)
        return obj

    def _read_sqlite_now(
        self, sql: str, params: Sequence[object] | dict[str, object]
    ) -> list[Any] | None:
        """The rows, or None when reading now would mean waiting."""
        if self._sqlite is None:
            assert self._sqlite_path is not None
            # Autocommit (isolation_level=None): every SELECT sees what is committed when
            # it starts. check_same_thread=False: only the event loop's thread uses it,
            # but the loop of a test client may run in another thread than the one that
            # made it.
            connection = sqlite3.connect(
                self._sqlite_path, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA query_only=ON")
            connection.execute("PRAGMA busy_timeout=0")
            self._sqlite = connection
        try:
            # fetchall steps the statement to its end, which ends its read transaction:
            # an open one would pin an old snapshot and hold back checkpoints.
            return self._sqlite.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return None
            raise

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
