"""Rows by primary key in one step of the driver, for the routes every request takes.

An ORM `session.get` costs a session, a pooled connection, a statement cache key and, on
aiosqlite, five thread hops (cursor, execute, fetch, close, the rollback on check-in):
about a millisecond of CPU for one row, most of a small request. Here each model's
statement is compiled once, and a read is

- on SQLite, one statement on a connection of this reader's own, on the event loop: in
  WAL mode a reader never waits for writers and a primary-key read takes a few
  microseconds, less than one thread hop. It has no busy timeout, so in the rare case
  where it would wait (a WAL being recovered) it goes through the pool instead;
- on PostgreSQL, one `fetchrow` on a small asyncpg pool of this reader's own: one round
  trip, where the engine's pool adds a pre-ping and SQLAlchemy's execution layers. A
  connection lost there (a restart) sends the read through the engine's pool, which
  pings and reconnects.

Values pass through the columns' own result processors, so a row read here equals what
the ORM would load. The object is a transient copy: read it, never add it to a session
(load the row in your session to change it).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import asyncpg
from sqlalchemy import bindparam, inspect, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase

ModelT = TypeVar("ModelT", bound=DeclarativeBase)
Rows = Sequence[Sequence[Any]]
Params = Sequence[object] | dict[str, object]


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

    def params(self, pk: object) -> Params:
        return (pk,) if self.positional else {"pk": pk}

    def build(self, row: Sequence[Any]) -> DeclarativeBase:
        values = {
            name: value if convert is None or value is None else convert(value)
            for (name, convert), value in zip(self.fields, row, strict=True)
        }
        return self.model(**values)


class _FastReader(Protocol):
    async def read(self, sql: str, params: Params) -> Rows | None:
        """The rows, or None when this way cannot answer now (the engine's pool will)."""
        ...

    async def aclose(self) -> None: ...


class _SqliteReader:
    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None

    async def read(self, sql: str, params: Params) -> Rows | None:
        if self._connection is None:
            # Autocommit (isolation_level=None): every SELECT sees what is committed when
            # it starts. check_same_thread=False: only the event loop's thread uses it,
            # but the loop of a test client may run in another thread than the one that
            # made it.
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA query_only=ON")
            connection.execute("PRAGMA busy_timeout=0")
            self._connection = connection
        try:
            # fetchall steps the statement to its end, which ends its read transaction:
            # an open one would pin an old snapshot and hold back checkpoints.
            return self._connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return None  # reading now would mean waiting
            raise

    async def aclose(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


# Point reads take one round trip each, so a few connections serve thousands a second.
POSTGRESQL_CONNECTIONS = 4
# How a lost connection shows in asyncpg: the socket, the protocol's state, or the server
# saying it goes away (administrator shutdown, crash, cancelled).
CONNECTION_LOST = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
)
# SQLAlchemy's own connect arguments, not asyncpg's.
_SQLALCHEMY_ONLY = {"prepared_statement_cache_size", "prepared_statement_name_func"}


def asyncpg_connect_args(engine: AsyncEngine) -> tuple[list[Any], dict[str, Any]]:
    """What asyncpg.connect takes for the engine's database (host, user, ssl, …)."""
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    return list(args), {k: v for k, v in kwargs.items() if k not in _SQLALCHEMY_ONLY}


async def _decode_json(connection: asyncpg.Connection) -> None:
    # As SQLAlchemy's asyncpg dialect does on its connections: JSON columns as objects.
    await connection.set_type_codec(
        "json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )


async def _keep_as_is(connection: asyncpg.Connection) -> None:
    """Nothing to reset: point reads leave no session state (asyncpg would otherwise send
    RESET ALL and more on every release, a second round trip)."""


class _PostgresqlReader:
    def __init__(self, engine: AsyncEngine) -> None:
        self._connect = asyncpg_connect_args(engine)
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None

    async def _open(self) -> asyncpg.Pool:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                args, kwargs = self._connect
                self._pool = await asyncpg.create_pool(
                    *args,
                    min_size=0,
                    max_size=POSTGRESQL_CONNECTIONS,
                    init=_decode_json,
                    reset=_keep_as_is,
                    **kwargs,
                )
            return self._pool

    async def read(self, sql: str, params: Params) -> Rows | None:
        pool = self._pool or await self._open()
        assert isinstance(params, Sequence)
        try:
            row = await pool.fetchrow(sql, *params)
        except CONNECTION_LOST:
            # A restart ends every connection: replace them all from now on. This read
            # takes the engine's pool, which pings before it lends.
            await pool.expire_connections()
            return None
        return [] if row is None else [row]

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class PointReads:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._statements: dict[type[DeclarativeBase], _Statement] = {}
        url = engine.url
        backend = url.get_backend_name()
        self._fast: _FastReader | None = None
        if backend == "sqlite" and url.database:
            self._fast = _SqliteReader(url.database)
        elif backend == "postgresql" and url.get_driver_name() == "asyncpg":
            self._fast = _PostgresqlReader(engine)

    async def get(self, model: type[ModelT], pk: object) -> ModelT | None:
        statement = self._statements.get(model)
        if statement is None:
            statement = self._statements[model] = _Statement(model, self._engine.dialect)
        params = statement.params(pk)
        rows = None if self._fast is None else await self._fast.read(statement.sql, params)
        if rows is None:
            async with self._engine.connect() as connection:
                result = await connection.exec_driver_sql(statement.sql, params)
                rows = result.all()
        if not rows:
            return None
        obj = statement.build(rows[0])
        assert isinstance(obj, model)
        return obj

    async def aclose(self) -> None:
        if self._fast is not None:
            await self._fast.aclose()
