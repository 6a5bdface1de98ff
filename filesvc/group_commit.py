"""Group commit: concurrent requests' inserts share one transaction and one commit.

A durable commit costs an fsync (SQLite's WAL with synchronous=FULL, PostgreSQL's WAL
flush); on SQLite it also takes the one write lock, which concurrent sessions would
otherwise queue for in busy-wait sleeps. Here one task per process does the writing: all
items that arrived while the previous commit ran are written by one call of `write`
(which can batch their statements) in one transaction, committed once. Nobody is answered
before the commit holding their rows has returned.

Failures stay with their owner: if `write` raises for a group (a row the database refuses,
any error of one item), the group is rolled back and each item is written again alone, in
its own transaction, so only the failing one sees its error. If the COMMIT itself fails,
the outcome of the group cannot be split, and every item of the group gets that error;
none of their rows exist then. `write` may therefore see an item twice: it must build new
ORM objects on each call and change nothing outside its transaction.

`write` is synchronous: it runs the group's statements on a SQLAlchemy `Connection`. On
SQLite that is the loop writer's (loop_writes.py): the statements run on the event loop
and only the COMMIT in a thread. Elsewhere it is a pooled session's connection, driven
through `run_sync`. On PostgreSQL a group may instead be written by `statement`: one
statement that is its own transaction (pg_writes.py), committed when it returns. It
raises RowsRefused when the database refused the rows, so none of them exist and each item
is tried again alone; any other error fails the group, as a failed COMMIT does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from filesvc.loop_writes import SqliteLoopWriter

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
Write = Callable[[Connection, list[ItemT]], list[ResultT]]
Statement = Callable[[list[ItemT]], Awaitable[list[ResultT]]]
# Bounds one transaction (and the time its jobs wait for each other).
MAX_GROUP = 64


@dataclass(slots=True)
class _Pending(Generic[ItemT, ResultT]):
    item: ItemT
    future: asyncio.Future[ResultT]


class _WriteFailed(Exception):
    """`write`, not the commit, failed: the group is rolled back and run one by one."""


class RowsRefused(Exception):
    """Raised by a `statement` (from the database's error) when the database refused the
    group's rows: none were written."""


class GroupCommit(Generic[ItemT, ResultT]):
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        write: Write[ItemT, ResultT],
        loop_writer: SqliteLoopWriter | None = None,
        statement: Statement[ItemT, ResultT] | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._write = write
        self._loop_writer = loop_writer
        self._statement = statement
        self._queue: list[_Pending[ItemT, ResultT]] = []
        self._runner: asyncio.Task[None] | None = None
        self.groups_committed = 0  # commits that held more than one item

    async def run(self, item: ItemT) -> ResultT:
        """Write `item` in a transaction, perhaps shared; return its result once committed.

        Cancelling the caller does not cancel the write: the caller waits for its
        outcome, so what it cleans up matches what was committed (an item that committed
        returns normally; the cancellation reaches the caller at its next await)."""
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain())
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            while not future.done():
                # anyio cancels every await of a cancelled scope again: shield this one.
                with anyio.CancelScope(shield=True), contextlib.suppress(BaseException):
                    await asyncio.shield(future)
            if future.cancelled() or future.exception() is not None:
                raise  # not committed (or the runner itself was cancelled)
            # Committed (perhaps just before the cancellation arrived), so the caller's
            # cleanup must not undo it: return, and let the cancellation reach the caller
            # at its next await.
            task = asyncio.current_task()
            if task is not None:
                task.cancel()
            return future.result()

    async def _drain(self) -> None:
        group: list[_Pending[ItemT, ResultT]] = []
        try:
            while self._queue:
                group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
                await self._commit(group)
        except BaseException as exc:  # only the runner's own cancellation (shutdown)
            waiting, self._queue = [*group, *self._queue], []
            for pending in waiting:
                if pending.future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    pending.future.cancel()
                else:
                    pending.future.set_exception(exc)
            raise

    async def _commit(self, group: list[_Pending[ItemT, ResultT]]) -> None:
        if len(group) == 1:
            await self._commit_alone(group[0])
            return
        try:
            await self._transaction([pending.item for pending in group], self._answer(group))
        except _WriteFailed:
            for pending in group:
                await self._commit_alone(pending)
        except Exception as exc:
            _fail(group, exc)

    async def _commit_alone(self, pending: _Pending[ItemT, ResultT]) -> None:
        try:
            await self._transaction([pending.item], self._answer([pending]))
        except _WriteFailed as exc:
            cause = exc.__cause__
            _fail([pending], cause if isinstance(cause, Exception) else exc)
        except Exception as exc:
            _fail([pending], exc)

    def _answer(self, group: list[_Pending[ItemT, ResultT]]) -> Callable[[list[ResultT]], None]:
        def committed(results: list[ResultT]) -> None:
            if len(group) > 1:
                self.groups_committed += 1
            for pending, result in zip(group, results, strict=True):
                pending.future.set_result(result)

        return committed

    async def _transaction(
        self, items: list[ItemT], committed: Callable[[list[ResultT]], None]
    ) -> None:
        writer = self._loop_writer
        if self._statement is not None:
            await self._in_one_statement(self._statement, items, committed)
        elif writer is not None:
            await self._on_loop(writer, items, committed)
        else:
            await self._in_session(items, committed)

    async def _in_one_statement(
        self,
        statement: Statement[ItemT, ResultT],
        items: list[ItemT],
        committed: Callable[[list[ResultT]], None],
    ) -> None:
        try:
            results = await statement(items)
        except RowsRefused as exc:
            raise _WriteFailed() from exc.__cause__
        committed(results)

    async def _on_loop(
        self,
        writer: SqliteLoopWriter,
        items: list[ItemT],
        committed: Callable[[list[ResultT]], None],
    ) -> None:
        connection = await writer.begin()  # waits for a write lock held elsewhere
        try:
            results = self._written(connection, items)
        except BaseException:
            writer.rollback()
            raise
        await writer.commit()  # rolls back itself if it fails
        committed(results)

    async def _in_session(
        self, items: list[ItemT], committed: Callable[[list[ResultT]], None]
    ) -> None:
        def write(session: Session) -> list[ResultT]:
            return self._written(session.connection(), items)

        async with self._sessionmaker() as session:
            try:
                results = await session.run_sync(write)
                await session.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    await session.rollback()
                raise
            # Answered as soon as committed: the connection's return to the pool (a
            # rollback, one more round trip on SQLite) is not the callers' to wait for.
            committed(results)

    def _written(self, connection: Connection, items: list[ItemT]) -> list[ResultT]:
        try:
            return self._write(connection, items)
        except Exception as exc:
            raise _WriteFailed() from exc


def _fail(group: list[_Pending[ItemT, ResultT]], exc: Exception) -> None:
    for pending in group:
        if not pending.future.done():  # an answered item's rows are committed
            pending.future.set_exception(exc)
