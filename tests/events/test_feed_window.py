"""The events table: a replay reads exactly the window, however often the table is trimmed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from filesvc.db import Base, Database
from filesvc.events.feed import DELETED, TRIM_BATCH, FileFeed
from filesvc.events.models import FileEvent
from filesvc.files.models import File, Visibility
from filesvc.transfers.broker import InProcessBroker

WINDOW = 5


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'feed.db'}")
    async with database.engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    yield database
    await database.dispose()


async def record_deletions(db: Database, feed: FileFeed, count: int) -> list[int]:
    async with db.session() as session:
        files = [
            File(id=f"f{n}", owner_id="o", visibility=Visibility.private) for n in range(count)
        ]
        return [event.id for event in await feed.record(session, DELETED, files)]


async def rows(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(FileEvent)) or 0)


async def test_a_replay_reads_the_window_and_the_table_stays_bounded(db: Database) -> None:
    feed = FileFeed(InProcessBroker(), db, WINDOW)
    recorded: list[int] = []
    for _ in range(2 * TRIM_BATCH // 7 + 3):  # several trims, in groups of seven
        recorded += await record_deletions(db, feed, 7)
        replayed = [event.id for event in await feed.replay(0)]
        assert replayed == recorded[-WINDOW:]
        assert await rows(db) <= WINDOW + TRIM_BATCH
    assert recorded == sorted(recorded)
    assert len(set(recorded)) == len(recorded)
    assert await rows(db) < len(recorded)  # trimmed at least once
