"""Group commit on a real SQLite database: who shares a commit, and who sees which failure."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

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


def committer(db: Database, transactions: list[list[str]]) -> GroupCommit[tuple[str, int], str]:
    async def write(session: AsyncSession, items: list[tuple[str, int]]) -> list[str]:
        transactions.append([name for name, _ in items])
        for name, parent_id in items:
            await session.execute(insert(children).values(name=name, parent_id=parent_id))
        return [f"stored {name}" for name, _ in items]

    return GroupCommit(db.sessionmaker, write)


async def stored(db: Database) -> list[str]:
    async with db.sessionmaker() as session:
        return sorted((await session.scalars(select(children.c.name))).all())


async def test_concurrent_items_share_one_commit(db: Database) -> None:
    transactions: list[list[str]] = []
    group = committer(db, transactions)
    names = [f"n{i}" for i in range(10)]

    results = await asyncio.gather(*(group.run((name, 1)) for name in names))

    assert results == [f"stored {name}" for name in names]
    assert transactions == [names]  # all queued before the runner started: one transaction
    assert group.groups_committed == 1
    assert await stored(db) == sorted(names)


async def test_items_arriving_during_a_commit_go_into_the_next(db: Database) -> None:
    transactions: list[list[str]] = []
    group = committer(db, transactions)
    first = asyncio.ensure_future(group.run(("first", 1)))
    await asyncio.sleep(0)  # the runner has taken "first"
    later = [asyncio.ensure_future(group.run((f"later{i}", 1))) for i in range(3)]

    await asyncio.gather(first, *later)

    assert transactions == [["first"], ["later0", "later1", "later2"]]
    assert await stored(db) == ["first", "later0", "later1", "later2"]


async def test_a_row_the_database_refuses_fails_only_its_own_item(db: Database) -> None:
    async with db.sessionmaker() as session:
        await session.execute(insert(children).values(name="taken", parent_id=1))
        await session.commit()
    transactions: list[list[str]] = []
    group = committer(db, transactions)

    results = await asyncio.gather(
        group.run(("a", 1)), group.run(("taken", 1)), group.run(("b", 1)), return_exceptions=True
    )

    assert results[0] == "stored a"
    assert isinstance(results[1], IntegrityError)
    assert results[2] == "stored b"
    # The group was rolled back, then each item ran alone.
    assert transactions == [["a", "taken", "b"], ["a"], ["taken"], ["b"]]
    assert await stored(db) == ["a", "b", "taken"]


async def test_a_failing_commit_fails_every_item_of_the_group(db: Database) -> None:
    transactions: list[list[str]] = []
    group = committer(db, transactions)

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


async def test_a_cancelled_caller_still_learns_that_its_row_committed(db: Database) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_write(session: AsyncSession, items: list[tuple[str, int]]) -> list[str]:
        started.set()
        await release.wait()
        for name, parent_id in items:
            await session.execute(insert(children).values(name=name, parent_id=parent_id))
        return ["stored" for _ in items]

    group: GroupCommit[tuple[str, int], str] = GroupCommit(db.sessionmaker, slow_write)
    outcome: list[str] = []

    async def caller() -> None:
        outcome.append(await group.run(("kept", 1)))
        await asyncio.sleep(0)  # the cancellation arrives here, after the result

    task = asyncio.ensure_future(caller())
    await started.wait()
    task.cancel()
    await asyncio.sleep(0.01)
    assert not task.done()  # waiting for the commit, not abandoning it
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert outcome == ["stored"]
    assert await stored(db) == ["kept"]


async def test_a_caller_in_a_cancelled_anyio_scope_waits_for_the_commit(db: Database) -> None:
    # anyio (Starlette's task groups) cancels every await of a cancelled scope again.
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_write(session: AsyncSession, items: list[tuple[str, int]]) -> list[str]:
        started.set()
        await release.wait()
        for name, parent_id in items:
            await session.execute(insert(children).values(name=name, parent_id=parent_id))
        return ["stored" for _ in items]

    group: GroupCommit[tuple[str, int], str] = GroupCommit(db.sessionmaker, slow_write)
    scope = anyio.CancelScope()
    outcome: list[str] = []

    async def caller() -> None:
        with scope:
            outcome.append(await group.run(("kept", 1)))
            await anyio.sleep(10)  # cancelled here, after the result

    task = asyncio.ensure_future(caller())
    await started.wait()
    scope.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()
    release.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)

    assert outcome == ["stored"]
    assert await stored(db) == ["kept"]
