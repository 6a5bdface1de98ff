"""Group commit on a real SQLite database: who shares a commit, and who sees which failure,
through the loop writer (loop_writes.py) and through the pool."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest
from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    event,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from filesvc import loop_writes
from filesvc.db import Database
from filesvc.group_commit import GroupCommit

metadata = MetaData()
parents = Table("parents", metadata, Column("id", Integer, primary_key=True))
children = Table(
    "children",
    metadata,
    Column("name", String(50), primary_key=True),
    # Checked at COMMIT, not at INSERT: a way to make the commit itself fail.
    Column("parent_id", Integer, ForeignKey("parents.id", deferrable=True, initially="DEFERRED")),
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'group.db'}")
    async with database.engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.execute(insert(parents).values(id=1))
    yield database
    await database.dispose()


Item = tuple[str, int]


@pytest.fixture(params=["loop", "pool"])
def path(request: pytest.FixtureRequest) -> str:
    """Which way groups go when nothing else writes: the loop writer, or the pool only."""
    return str(request.param)


@pytest.fixture
def pool_checkouts(db: Database) -> list[object]:
    """Every connection taken from the engine's pool."""
    taken: list[object] = []
    event.listen(db.engine.sync_engine, "checkout", lambda *args: taken.append(args[0]))
    return taken


def make_committer(
    db: Database, path: str, write: Callable[[Connection, list[Item]], list[str]]
) -> GroupCommit[Item, str]:
    return GroupCommit(db.sessionmaker, write, db.group_writer if path == "loop" else None)


def committer(db: Database, path: str, transactions: list[list[str]]) -> GroupCommit[Item, str]:
    def write(connection: Connection, items: list[Item]) -> list[str]:
        transactions.append([name for name, _ in items])
        for name, parent_id in items:
            connection.execute(insert(children).values(name=name, parent_id=parent_id))
        return [f"stored {name}" for name, _ in items]

    return make_committer(db, path, write)


@contextlib.contextmanager
def write_lock_held(db: Database) -> Iterator[None]:
    """Another connection holds SQLite's write lock (a PATCH, another worker)."""
    assert db.engine.url.database is not None
    other = sqlite3.connect(db.engine.url.database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


async def stored(db: Database) -> list[str]:
    async with db.sessionmaker() as session:
        return sorted((await session.scalars(select(children.c.name))).all())


async def test_concurrent_items_share_one_commit(
    db: Database, path: str, pool_checkouts: list[object]
) -> None:
    transactions: list[list[str]] = []
    group = committer(db, path, transactions)
    names = [f"n{i}" for i in range(10)]

    results = await asyncio.gather(*(group.run((name, 1)) for name in names))

    assert results == [f"stored {name}" for name in names]
    assert transactions == [names]  # all queued before the runner started: one transaction
    assert group.groups_committed == 1
    assert len(pool_checkouts) == (0 if path == "loop" else 1)
    assert await stored(db) == sorted(names)


async def test_items_arriving_during_a_commit_go_into_the_next(db: Database, path: str) -> None:
    transactions: list[list[str]] = []
    group = committer(db, path, transactions)
    first = asyncio.ensure_future(group.run(("first", 1)))
    await asyncio.sleep(0)  # the runner has taken "first"
    later = [asyncio.ensure_future(group.run((f"later{i}", 1))) for i in range(3)]

    await asyncio.gather(first, *later)

    assert transactions == [["first"], ["later0", "later1", "later2"]]
    assert await stored(db) == ["first", "later0", "later1", "later2"]


async def test_a_row_the_database_refuses_fails_only_its_own_item(db: Database, path: str) -> None:
    async with db.sessionmaker() as session:
        await session.execute(insert(children).values(name="taken", parent_id=1))
        await session.commit()
    transactions: list[list[str]] = []
    group = committer(db, path, transactions)

    results = await asyncio.gather(
        group.run(("a", 1)), group.run(("taken", 1)), group.run(("b", 1)), return_exceptions=True
    )

    assert results[0] == "stored a"
    assert isinstance(results[1], IntegrityError)
    assert results[2] == "stored b"
    # The group was rolled back, then each item ran alone.
    assert transactions == [["a", "taken", "b"], ["a"], ["taken"], ["b"]]
    assert await stored(db) == ["a", "b", "taken"]


async def test_a_failing_commit_fails_every_item_of_the_group(db: Database, path: str) -> None:
    transactions: list[list[str]] = []
    group = committer(db, path, transactions)

    # Parent 2 does not exist; the deferred foreign key fails the COMMIT of the group.
    results = await asyncio.gather(
        group.run(("a", 1)), group.run(("orphan", 2)), group.run(("b", 1)), return_exceptions=True
    )

    assert all(isinstance(result, IntegrityError) for result in results)
    assert transactions == [["a", "orphan", "b"]]
    assert await stored(db) == []
    # The next items commit as usual.
    assert await group.run(("c", 1)) == "stored c"
    assert await stored(db) == ["c"]


def signalling_committer(db: Database, started: asyncio.Event) -> GroupCommit[Item, str]:
    def write(connection: Connection, items: list[Item]) -> list[str]:
        started.set()
        for name, parent_id in items:
            connection.execute(insert(children).values(name=name, parent_id=parent_id))
        return ["stored" for _ in items]

    # Through the pool, whose INSERT waits for a held write lock in a thread.
    return make_committer(db, "pool", write)


async def test_a_held_write_lock_makes_the_loop_writer_wait_without_blocking_the_loop(
    db: Database, pool_checkouts: list[object]
) -> None:
    transactions: list[list[str]] = []
    group = committer(db, "loop", transactions)
    with write_lock_held(db):
        waiting = asyncio.gather(group.run(("a", 1)), group.run(("b", 1)))
        for _ in range(20):  # the loop keeps serving: these sleeps end while it waits
            await asyncio.sleep(0.001)
        assert not waiting.done()
        assert transactions == []  # nothing written before the lock is had
    assert list(await waiting) == ["stored a", "stored b"]
    assert transactions == [["a", "b"]]
    assert pool_checkouts == []
    assert await stored(db) == ["a", "b"]


async def test_a_cancelled_caller_still_learns_that_its_row_committed(db: Database) -> None:
    started = asyncio.Event()
    group = signalling_committer(db, started)
    outcome: list[str] = []

    async def caller() -> None:
        outcome.append(await group.run(("kept", 1)))
        await asyncio.sleep(0)  # the cancellation arrives here, after the result

    with write_lock_held(db):  # the INSERT waits for it
        task = asyncio.ensure_future(caller())
        await started.wait()
        task.cancel()
        await asyncio.sleep(0.01)
        assert not task.done()  # waiting for the commit, not abandoning it
    with pytest.raises(asyncio.CancelledError):
        await task

    assert outcome == ["stored"]
    assert await stored(db) == ["kept"]


async def test_a_caller_in_a_cancelled_anyio_scope_waits_for_the_commit(db: Database) -> None:
    # anyio (Starlette's task groups) cancels every await of a cancelled scope again.
    started = asyncio.Event()
    group = signalling_committer(db, started)
    scope = anyio.CancelScope()
    outcome: list[str] = []

    async def caller() -> None:
        with scope:
            outcome.append(await group.run(("kept", 1)))
            await anyio.sleep(10)  # cancelled here, after the result

    with write_lock_held(db):
        task = asyncio.ensure_future(caller())
        await started.wait()
        scope.cancel()
        await asyncio.sleep(0.05)
        assert not task.done()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)

    assert outcome == ["stored"]
    assert await stored(db) == ["kept"]


async def test_the_loop_writer_commits_as_durably_as_the_pool(db: Database) -> None:
    assert db.group_writer is not None
    connection = await db.group_writer.begin()
    try:
        settings = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    finally:
        db.group_writer.rollback()
    # WAL fsynced at every COMMIT (2 = FULL), as the pool's; it never waits for the lock.
    assert settings == {
        "journal_mode": "wal",
        "synchronous": 2,
        "foreign_keys": 1,
        "busy_timeout": 0,
    }


async def test_a_cancelled_commit_keeps_the_connection_until_its_thread_is_done(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The COMMIT cannot be stopped in its thread: until it returns, nothing else may use
    # the connection (a ROLLBACK, the next group's BEGIN).
    started, release = threading.Event(), threading.Event()
    real_commit = loop_writes._commit

    def slow_commit(raw: sqlite3.Connection) -> None:
        started.set()
        release.wait(5)
        real_commit(raw)

    monkeypatch.setattr(loop_writes, "_commit", slow_commit)
    writer = db.group_writer
    assert writer is not None
    connection = await writer.begin()
    connection.execute(insert(children).values(name="a", parent_id=1))
    committing = asyncio.create_task(writer.commit())
    assert await asyncio.to_thread(started.wait, 5)
    committing.cancel()
    for _ in range(20):  # the cancellation is delivered, and the task still waits
        await asyncio.sleep(0.001)
    assert not committing.done()

    release.set()
    with pytest.raises(asyncio.CancelledError):
        await committing
    # It committed in its thread, so the row is there; the connection is free again.
    assert await stored(db) == ["a"]
    connection = await writer.begin()
    connection.execute(insert(children).values(name="b", parent_id=1))
    await writer.commit()
    assert await stored(db) == ["a", "b"]
