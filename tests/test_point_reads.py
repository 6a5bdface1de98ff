"""Point reads return what the ORM loads, see every commit at once, and on SQLite step
aside instead of waiting for a lock."""

from __future__ import annotations

import sqlite3
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
        owner = User(username="owner", password_hash="x", role=Role.editor, disabled=True)
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
            storage_key="key-a",
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
        reads = db.point_reads
        statement_sql = "SELECT id FROM files WHERE id = ?"
        assert reads._read_sqlite_now(statement_sql, (file.id,)) is None  # busy: not now
    finally:
        locker.rollback()
        locker.close()
    read = await db.point_reads.get(File, file.id)
    assert read is not None
    assert read.name == "a.txt"
