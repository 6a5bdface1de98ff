"""Point reads return what the ORM loads, see every commit at once, and go through the
engine's pool when their own way can't answer: a SQLite read that would wait for a lock, a
PostgreSQL connection that was lost."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path

import pytest
from sqlalchemy import inspect

from filesvc.db import Base, Database
from filesvc.files.models import File, Visibility
from filesvc.migrate import upgrade
from filesvc.users.models import Role, User


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


async def stored_file(db: Database) -> File:
    async with db.session() as session:
        owner = User(
            username=f"owner-{uuid.uuid4().hex[:8]}",
            password_hash="x",
            role=Role.editor,
            disabled=True,
        )
        session.add(owner)
        await session.flush()
        file = File(
            name="a.txt",
            size=3,
            content_type="text/plain",
            sha256="0" * 64,
            visibility=Visibility.internal,
            owner_id=owner.id,
            meta={"tags": ["x", 1], "nested": {"k": None}},
            storage_key=uuid.uuid4().hex,
        )
        session.add(file)
    return file


def columns_of(obj: Base) -> dict[str, object]:
    return {attr.key: getattr(obj, attr.key) for attr in inspect(type(obj)).column_attrs}


async def test_a_point_read_equals_the_orm_load(db: Database) -> None:
    file = await stored_file(db)
    async with db.session() as session:
        loaded = await session.get(File, file.id)
        owner = await session.get(User, file.owner_id)
    assert loaded is not None
    assert owner is not None

    read = await db.point_reads.get(File, file.id)
    read_owner = await db.point_reads.get(User, file.owner_id)

    assert read is not None
    assert read_owner is not None
    assert columns_of(read) == columns_of(loaded)
    assert columns_of(read_owner) == columns_of(owner)
    assert read.visibility is Visibility.internal
    assert read.created_at.tzinfo is UTC
    assert read_owner.role is Role.editor
    assert read_owner.disabled is True


async def test_a_missing_row_is_none(db: Database) -> None:
    assert await db.point_reads.get(File, "no-such-id") is None


async def test_a_commit_is_seen_by_the_next_point_read(db: Database) -> None:
    file = await stored_file(db)
    assert (await db.point_reads.get(File, file.id)) is not None
    async with db.session() as session:
        row = await session.get(File, file.id)
        assert row is not None
        row.visibility = Visibility.private
    read = await db.point_reads.get(File, file.id)
    assert read is not None
    assert read.visibility is Visibility.private
    async with db.session() as session:
        row = await session.get(File, file.id)
        await session.delete(row)
    assert await db.point_reads.get(File, file.id) is None


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'filesvc.db'}"
    upgrade(url)
    database = Database(url)
    yield database
    await database.dispose()


async def test_sqlite_reads_that_would_wait_go_through_the_pool(sqlite_db: Database) -> None:
    """Only SQLite reads on the event loop."""
    db = sqlite_db
    file = await stored_file(db)
    path = db.engine.url.database
    assert path is not None
    # An exclusive-mode writer shuts every other connection out, WAL or not; it can only
    # start while no other connection has the database open.
    await db.engine.dispose()
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("PRAGMA locking_mode=EXCLUSIVE")
        locker.execute("BEGIN EXCLUSIVE")
        locker.execute("UPDATE files SET name = 'b.txt'")
        fast = db.point_reads._fast
        assert fast is not None
        busy = await fast.read("SELECT id FROM files WHERE id = ?", (file.id,))
        assert busy is None  # not now: the engine's pool (which waits) takes it
    finally:
        locker.rollback()
        locker.close()
    read = await db.point_reads.get(File, file.id)
    assert read is not None
    assert read.name == "a.txt"


@pytest.fixture
async def postgresql_db(postgres_database: str) -> AsyncIterator[Database]:
    database = Database(postgres_database)
    yield database
    await database.dispose()


async def test_a_lost_postgresql_connection_does_not_fail_a_read(
    postgresql_db: Database,
) -> None:
    """Only PostgreSQL point reads have a pool of their own."""
    db = postgresql_db
    file = await stored_file(db)
    assert await db.point_reads.get(File, file.id) is not None  # its pool has a connection
    async with db.engine.connect() as connection:
        # What a server restart does to every idle connection of the reader's pool.
        await connection.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state = 'idle' AND query LIKE 'SELECT%files%'"
        )
    read = await db.point_reads.get(File, file.id)
    assert read is not None
    assert read.id == file.id
    again = await db.point_reads.get(File, file.id)  # on a new connection of its own
    assert again is not None
