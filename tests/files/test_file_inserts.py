"""New files and their events, committed in groups on each database's own way (the SQLite
loop writer; one statement on PostgreSQL's own connection): what is stored is what the
uploads were answered with, a refused row fails only its own upload, the event window is
trimmed, and a lost PostgreSQL connection is replaced."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, inspect, select

from filesvc.db import Base, Database
from filesvc.events import feed as feed_module
from filesvc.events.feed import CREATED, FileFeed
from filesvc.events.models import FileEvent
from filesvc.files.inserts import Build, FileInserts, file_inserts
from filesvc.files.models import File, Visibility
from filesvc.files.schemas import FileRead
from filesvc.transfers.broker import InProcessBroker
from filesvc.users.models import Role, User


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
async def owner(db: Database) -> User:
    async with db.session() as session:
        user = User(username=f"u-{uuid.uuid4().hex[:8]}", password_hash="x", role=Role.editor)
        session.add(user)
    return user


def build(owner: User, name: str, storage_key: str | None = None) -> Build:
    def rows() -> list[File]:
        return [
            File(
                name=name,
                size=len(name),
                content_type="text/plain",
                sha256=name.ljust(64, "0")[:64],
                visibility=Visibility.internal,
                owner_id=owner.id,
                meta={"name": name, "tags": ["ü", 1, None]},
                storage_key=storage_key or uuid.uuid4().hex,
            )
        ]

    return rows


def columns_of(obj: Base) -> dict[str, object]:
    return {attr.key: getattr(obj, attr.key) for attr in inspect(type(obj)).column_attrs}


async def stored_names(db: Database) -> list[str]:
    async with db.session() as session:
        return sorted((await session.scalars(select(File.name))).all())


async def test_a_group_stores_what_its_uploads_were_answered_with(
    db: Database, owner: User
) -> None:
    inserts = file_inserts(db, FileFeed(InProcessBroker(), db, 1000))
    names = [f"f{i}.txt" for i in range(5)]

    answered = await asyncio.gather(*(inserts.run(build(owner, name)) for name in names))

    assert inserts.groups_committed == 1  # all five in one group
    async with db.session() as session:
        for (files, events), name in zip(answered, names, strict=True):
            [file], [event] = files, events
            loaded = await session.get(File, file.id)
            assert loaded is not None
            assert columns_of(loaded) == columns_of(file)
            assert loaded.name == name
            assert loaded.meta == {"name": name, "tags": ["ü", 1, None]}
            stored_event = await session.get(FileEvent, event.id)
            assert stored_event is not None
            stored_columns = columns_of(stored_event)
            assert stored_columns == {key: getattr(event, key) for key in stored_columns}
            assert (event.kind, event.file_id, event.owner_id) == (CREATED, file.id, owner.id)
            assert event.data == FileRead.of(loaded).model_dump(mode="json")
    event_ids = [events[0].id for _, events in answered]
    assert event_ids == sorted(event_ids)  # in the order of the uploads


async def test_a_refused_row_fails_only_its_own_upload(db: Database, owner: User) -> None:
    inserts = file_inserts(db, FileFeed(InProcessBroker(), db, 1000))
    await inserts.run(build(owner, "first", storage_key="taken"))

    results = await asyncio.gather(
        inserts.run(build(owner, "a")),
        inserts.run(build(owner, "clash", storage_key="taken")),  # the key is unique
        inserts.run(build(owner, "b")),
        return_exceptions=True,
    )

    assert not isinstance(results[0], BaseException)
    assert isinstance(results[1], Exception)
    assert not isinstance(results[2], BaseException)
    assert await stored_names(db) == ["a", "b", "first"]
    async with db.session() as session:
        events = (await session.scalars(select(FileEvent.file_id))).all()
    assert sorted(events) == sorted(
        [files[0].id for files, _ in (results[0], results[2])] + [await file_id(db, "first")]
    )


async def file_id(db: Database, name: str) -> str:
    async with db.session() as session:
        found = await session.scalar(select(File.id).where(File.name == name))
    assert found is not None
    return found


async def test_old_events_are_trimmed(
    db: Database, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_module, "TRIM_BATCH", 3)
    feed = FileFeed(InProcessBroker(), db, 2)
    inserts = file_inserts(db, feed)

    for i in range(12):
        await inserts.run(build(owner, f"n{i}"))

    async with db.session() as session:
        left = (await session.scalars(select(FileEvent.id).order_by(FileEvent.id))).all()
        files = await session.scalar(select(func.count()).select_from(File))
    assert files == 12
    assert 2 <= len(left) <= 2 + 3  # the window, and at most one batch waiting for a trim
    assert [event.id for event in await feed.replay(0)] == left[-2:]


async def test_a_lost_postgresql_connection_is_replaced(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(postgres_database)
    try:
        inserts: FileInserts = file_inserts(db, FileFeed(InProcessBroker(), db, 1000))
        async with db.session() as session:
            user = User(username=f"u-{uuid.uuid4().hex[:8]}", password_hash="x", role=Role.editor)
            session.add(user)
        await inserts.run(build(user, "before"))  # the writer has its connection now
        async with db.engine.connect() as connection:
            # What a server restart does to it.
            terminated = await connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND query LIKE 'WITH new_files%'"
            )
            assert len(terminated.all()) == 1

        # The first group after the loss may fail (the loss shows only when it is used);
        # nothing of it is stored then, and the next one commits on a new connection.
        with_error = await asyncio.gather(inserts.run(build(user, "lost?")), return_exceptions=True)
        await inserts.run(build(user, "after"))

        names = [name for name in await stored_names(db) if name in ("before", "lost?", "after")]
        stored = isinstance(with_error[0], tuple)
        assert names == (["after", "before", "lost?"] if stored else ["after", "before"])
    finally:
        await db.dispose()
