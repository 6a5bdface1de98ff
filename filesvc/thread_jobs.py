"""Thread jobs awaited from the event loop, one loop turn sooner than through a shield.

`await asyncio.shield(loop.run_in_executor(...))` is the usual way to wait for a job that a
cancellation must not abandon: a thread cannot be stopped, and whoever cleans up after the
job must wait for it. But each future in that chain costs a turn of the event loop before
the awaiting task runs again: the executor's result is copied into an asyncio future, the
shield copies it into another, and that one wakes the task. On a busy loop a turn takes a
millisecond or more, and a small upload waits for two such jobs (its disk job and its
group's COMMIT). `submit` copies the result once, into the future the caller awaits;
cancelling that future leaves the job running, as a shield does, and `finished` waits for
the job itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
Job = concurrent.futures.Future


def submit(
    executor: concurrent.futures.Executor, job: Callable[[], T]
) -> tuple[Job[T], asyncio.Future[T]]:
    """Start `job` in `executor`; return it, to wait for with `finished`, and a future of its
    outcome to await. The job is never cancelled: it runs to its end whatever the caller
    does."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()
    running = executor.submit(job)

    def copy() -> None:
        if outcome.cancelled():
            return  # the caller was cancelled meanwhile
        error = running.exception()
        if error is None:
            outcome.set_result(running.result())
        else:
            outcome.set_exception(error)

    def done(_: Job[T]) -> None:  # in the job's thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: no one waits any more
            loop.call_soon_threadsafe(copy)

    running.add_done_callback(done)
    return running, outcome


async def finished(running: Job[T]) -> None:
    """Wait until `running` has ended, whatever its outcome; cancelling this wait does not
    cancel the job."""
    if not running.done():
        waiting = asyncio.wrap_future(running)
        waiting.add_done_callback(_retrieved)
        await asyncio.wait({waiting})


def _retrieved(waiting: asyncio.Future[T]) -> None:
    # Its error belongs to whoever awaited the outcome; read here so asyncio does not log
    # it as never retrieved.
    if not waiting.cancelled():
        waiting.exception()
