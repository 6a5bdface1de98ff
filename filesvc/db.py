"""Database engine, declarative base with a naming convention, and the session dependency."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import String, TypeDecorator

from filesvc.ids import uuid4_str
from filesvc.loop_writes import SqliteLoopWriter
from filesvc.pg_writes import PostgresWriter
from filesvc.point_reads import PointReads
from filesvc.sqlite_pragmas import apply_pragmas

# Explicit names so migrations are stable across SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid4_str()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


IdColumn = String(36)
POOL_SIZE = 20
POOL_OVERFLOW = 10


def _sqlite_pragmas(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
    apply_pragmas(dbapi_connection)


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        # Enough pooled connections for a burst of concurrent requests: one made past the
        # pool is closed again after one use (on SQLite a new thread and four PRAGMAs each
        # time, on PostgreSQL a new login).
        pool: dict[str, Any] = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
        if url.startswith("sqlite"):
            self.engine: AsyncEngine = create_async_engine(url, echo=echo, **pool)
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            writer = reader = self.engine
        else:
            # Pooled connections rest in autocommit: the pre-ping is then one round trip
            # (not BEGIN, ping, ROLLBACK) and a read needs no BEGIN and COMMIT. Sessions
            # get PostgreSQL's default, READ COMMITTED, for as long as they hold one.
            self.engine = create_async_engine(
                url,
                echo=echo,
                isolation_level="AUTOCOMMIT",
                pool_pre_ping=True,
                **pool,
            )
            writer = self.engine.execution_options(isolation_level="READ COMMITTED")
            reader = self.engine
        # This database's own session class, so session events (auth/cache.py) can be
        # listened to per database, not for every session in the process.
        self.session_class: type[Session] = type("DatabaseSession", (Session,), {})
        # expire_on_commit=False: handlers return ORM objects after committing.
        self.sessionmaker = async_sessionmaker(
            writer, expire_on_commit=False, sync_session_class=self.session_class
        )
        # A row by primary key without a session, in autocommit on PostgreSQL: what most
        # small requests read.
        self.point_reads = PointReads(reader)
        # SQLite: the group commit's transactions on the event loop, on a file database
        # (another connection to `:memory:` would be another database).
        path = self.engine.url.database
        self.group_writer = (
            SqliteLoopWriter(path)
            if self.engine.url.get_backend_name() == "sqlite" and path and path != ":memory:"
            else None
        )
        # PostgreSQL: a group's rows in one statement on a connection of its own.
        self.pg_writer = (
            PostgresWriter(self.engine)
            if self.engine.url.get_backend_name() == "postgresql"
            and self.engine.url.get_driver_name() == "asyncpg"
            else None
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """Yield a session that commits on success and rolls back on any error."""
        async with self.sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        await self.point_reads.aclose()
        if self.group_writer is not None:
            self.group_writer.close()
        if self.pg_writer is not None:
            await self.pg_writer.close()
        await self.engine.dispose()
