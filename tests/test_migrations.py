"""The migrations build exactly the schema the models describe, and can be undone."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from filesvc.migrate import downgrade, upgrade
from filesvc.models import Base


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _inspect(database_url: str, check: Any) -> Any:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(check)
    finally:
        await engine.dispose()


async def test_migrations_match_the_models(database_url: str) -> None:
    assert await _inspect(database_url, _diff) == []


async def test_downgrade_then_upgrade_again(database_url: str) -> None:
    downgrade(database_url, "base")
    assert await _inspect(database_url, _tables) <= {"alembic_version"}
    upgrade(database_url)
    assert {"users", "files"} <= await _inspect(database_url, _tables)
    assert await _inspect(database_url, _diff) == []


def test_a_new_sqlite_database_is_migrated_into_wal_mode(tmp_path: Path) -> None:
    """So the workers of `serve --workers N`, which start together, never switch modes."""
    path = tmp_path / "fresh.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        connection.close()
