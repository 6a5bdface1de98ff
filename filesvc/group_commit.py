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
ORM objects on each call and change nothing outside the session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
Write = Callable[[AsyncSession, list[ItemT]], Awaitable[list[ResultT]]]
# Bounds one transaction (and the time its jobs wait for each other).
MAX_GROUP = 64


@dataclass(slots=True)
class _Pending(Generic[ItemT, ResultT]):
    item: ItemT
    future: asyncio.Future[ResultT]


class _WriteFailed(Exception):
    """`write`, not the commit, failed: the group is rolled back and run one by one."""


class GroupCommit(Generic[ItemT, ResultT]):
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], write: Write[ItemT, ResultT]
    ) -> None:
        self._sessionmaker = sessionmaker
        self._write = write
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
        async with self._sessionmaker() as session:
            try:
                try:
                    results = await self._write(session, items)
                except Exception as exc:
                    raise _WriteFailed() from exc
                await session.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    await session.rollback()
                raise
            # Answered as soon as committed: the connection's return to the pool (a
            # rollback, one more round trip on SQLite) is not the callers' to wait for.
            committed(results)


def _fail(group: list[_Pending[ItemT, ResultT]], exc: Exception) -> None:
    for pending in group:
        if not pending.future.done():  # an answered item's rows are committed
            pending.future.set_exception(exc)
