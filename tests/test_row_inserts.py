"""Rows inserted on the loop writer's own sqlite3 connection are stored exactly as Core
stores them (the pool's path), in the same order, with the same errors."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, Column, Connection, Enum, Integer, MetaData, String, Table
from sqlalchemy.exc import IntegrityError

from filesvc import row_inserts
from filesvc.db import Database, UTCDateTime


class Colour(StrEnum):
    red = "red"
    blue = "blue"


metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(50), unique=True),
    Column("colour", Enum(Colour, native_enum=False, length=8)),
    Column("data", JSON),
    Column("at", UTCDateTime),
    Column("note", String(50), nullable=True),
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'rows.db'}")
    async with database.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield database
    await database.dispose()


def rows(prefix: str, count: int) -> list[dict[str, Any]]:
    at = datetime(2026, 11, 30, 15, 4, 5, 123456, tzinfo=UTC)
    return [
        {
            "name": f"{prefix}{i}",
            "colour": Colour.blue if i % 2 else Colour.red,
            "data": {"i": i, "text": "grüße ✓", "nested": [1, None, True]},
            "at": at,
            "note": None if i % 3 else f"note {i}",
        }
        for i in range(count)
    ]


Write = Callable[[Connection], Any]


async def on_loop_writer(db: Database, write: Write) -> Any:
    """`write` on the loop writer's connection: the sqlite3 driver's own path."""
    assert db.group_writer is not None
    connection = await db.group_writer.begin()
    try:
        result = write(connection)
    except BaseException:
        db.group_writer.rollback()
        raise
    await db.group_writer.commit()
    return result


async def through_core(db: Database, write: Write) -> Any:
    """`write` on a pooled (aiosqlite) connection: Core's path."""
    async with db.engine.begin() as connection:
        return await connection.run_sync(write)


def stored(db: Database) -> list[tuple[Any, ...]]:
    """Every row as SQLite holds it (the stored text, not what SQLAlchemy reads back)."""
    assert db.engine.url.database is not None
    with sqlite3.connect(db.engine.url.database) as raw:
        return raw.execute(
            "SELECT id, name, colour, data, at, note, typeof(at) FROM things ORDER BY id"
        ).fetchall()


async def test_rows_are_stored_as_core_stores_them(db: Database) -> None:
    await through_core(db, lambda c: row_inserts.insert_rows(c, things, rows("core", 5)))
    await on_loop_writer(db, lambda c: row_inserts.insert_rows(c, things, rows("loop", 5)))

    stored_rows = stored(db)
    by_core = [row[2:] for row in stored_rows if row[1].startswith("core")]
    on_loop = [row[2:] for row in stored_rows if row[1].startswith("loop")]
    assert len(by_core) == 5
    assert on_loop == by_core
    assert by_core[1] == (
        "blue",
        '{"i": 1, "text": "gr\\u00fc\\u00dfe \\u2713", "nested": [1, null, true]}',
        "2026-11-30 15:04:05.123456",
        None,
        "text",
    )


@pytest.mark.parametrize("way", [on_loop_writer, through_core])
async def test_returned_ids_follow_the_rows(db: Database, way: Callable[..., Any]) -> None:
    await through_core(db, lambda c: row_inserts.insert_rows(c, things, rows("earlier", 3)))

    ids = await way(db, lambda c: row_inserts.insert_rows_returning_ids(c, things, rows("new", 7)))

    names = {row[0]: row[1] for row in stored(db)}
    assert [names[i] for i in ids] == [f"new{i}" for i in range(7)]


async def test_more_rows_than_one_statement_binds(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(row_inserts, "_MAX_VARIABLES", 10)  # two rows of five a statement

    ids = await on_loop_writer(
        db, lambda c: row_inserts.insert_rows_returning_ids(c, things, rows("n", 7))
    )

    names = {row[0]: row[1] for row in stored(db)}
    assert [names[i] for i in ids] == [f"n{i}" for i in range(7)]
    assert len(names) == 7


@pytest.mark.parametrize("insert", ["insert_rows", "insert_rows_returning_ids"])
async def test_a_refused_row_raises_what_core_raises(db: Database, insert: str) -> None:
    await on_loop_writer(db, lambda c: row_inserts.insert_rows(c, things, rows("taken", 1)))
    clashing = [*rows("fresh", 1), *rows("taken", 1)]

    with pytest.raises(IntegrityError):
        await on_loop_writer(db, lambda c: getattr(row_inserts, insert)(c, things, clashing))
    with pytest.raises(IntegrityError):
        await through_core(db, lambda c: getattr(row_inserts, insert)(c, things, clashing))

    assert [row[1] for row in stored(db)] == ["taken0"]  # both rolled back whole
