"""Blocking jobs run in threads of their own and awaited from the event loop.

`loop.run_in_executor` on a ThreadPoolExecutor, awaited through `asyncio.shield` (a thread
cannot be stopped, and whoever cleans up after a job must wait for it), is a chain of
futures: the executor's (a `threading.Condition` to make, lock and notify), an asyncio
copy of it, and the shield's copy, each costing a turn of the event loop before the
awaiting task runs again. A small upload waits for two such jobs (its fsyncs and its
group's COMMIT), and under load the Python of that chain was 3 % of the loop's time, while
the worker's share of it held the GIL the loop was waiting for.

Here a job is one object: a worker thread runs it and hands its outcome to the loop in one
`call_soon_threadsafe`, straight into the future the caller awaits. Cancelling that
future leaves the job running, as a shield does, and `finished` waits for the job itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Job(Generic[T]):
    """One call of `fn` in a worker thread, for one event loop."""

    __slots__ = ("_ended", "_fn", "_loop", "_waiters", "outcome")

    def __init__(self, fn: Callable[[], T], loop: asyncio.AbstractEventLoop) -> None:
        self._fn = fn
        self._loop = loop
        self.outcome: asyncio.Future[T] = loop.create_future()
        self._ended = False
        self._waiters: list[asyncio.Future[None]] = []

    def done(self) -> bool:
        """The job has ended (seen from the loop: its outcome was handed over)."""
        return self._ended

    def run(self) -> None:
        """In a worker thread."""
        # The job lets go of its callable as it runs: a closure over the bytes of an upload
        # and over whoever keeps this job (a blob writer, until its next job) is a cycle,
        # and a burst of uploads left hundreds of MiB of them to the cyclic GC, which
        # rarely gets to the oldest generation (README, "Memory after a burst").
        fn = self._fn
        del self._fn
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn()
        except BaseException as exc:  # the caller's to see, whatever it is
            error = exc
        del fn  # before the caller wakes up, not when this thread gets round to it
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._settle, result, error)

    def _settle(self, result: T | None, error: BaseException | None) -> None:
        self._ended = True
        # A caller cancelled meanwhile cancelled the outcome: its error, if any, is then
        # nobody's to see (and a cancelled future is never reported as unretrieved).
        if not self.outcome.done():
            if error is None:
                self.outcome.set_result(result)  # type: ignore[arg-type]  # fn's own T
            else:
                self.outcome.set_exception(error)
        for waiter in self._waiters:
            if not waiter.done():  # its own wait was cancelled
                waiter.set_result(None)

    def ended(self) -> asyncio.Future[None]:
        """A future done once the job has ended (at once if it has)."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        if self._ended:
            waiter.set_result(None)
        else:
            self._waiters.append(waiter)
        return waiter


class JobThreads:
    """Up to `size` worker threads taking jobs from one queue, started as they are needed.

    Jobs are submitted from event loops only. A thread done with its job leaves a token in
    `_idle`; a submit takes one, or starts a thread if there is none and the limit allows,
    as ThreadPoolExecutor does, with queues (C, atomic) in place of its locks. Daemon
    threads: a job still running at exit belongs to a request nobody will answer (uploads
    are answered only after their jobs), and exit must not wait for a stuck disk."""

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[Job[Any] | None] = queue.SimpleQueue()
        self._idle: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._threads = 0
        self._closed = False

    def submit(self, fn: Callable[[], T]) -> Job[T]:
        if self._closed:
            raise RuntimeError(f"{self._name} threads are shut down")
        job = Job(fn, asyncio.get_running_loop())
        try:
            self._idle.get_nowait()
        except queue.Empty:
            if self._threads < self._size:
                self._threads += 1
                name = f"{self._name}-{self._threads}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
        self._jobs.put(job)
        return job

    def _work(self) -> None:
        jobs, idle = self._jobs, self._idle
        while (job := jobs.get()) is not None:
            job.run()
            del job  # nothing of it kept alive while waiting for the next
            idle.put(True)

    def shutdown(self) -> None:
        """Each thread ends after the jobs already submitted; no new job may come."""
        self._closed = True
        for _ in range(self._threads):
            self._jobs.put(None)


def submit(threads: JobThreads, fn: Callable[[], T]) -> tuple[Job[T], asyncio.Future[T]]:
    """Start `fn` in one of `threads`; return the job, to wait for with `finished`, and the
    future of its outcome to await. The job is never cancelled: it runs to its end whatever
    the caller does."""
    job = threads.submit(fn)
    return job, job.outcome


async def run(threads: JobThreads, fn: Callable[[], T]) -> T:
    """`fn` in one of `threads`, awaited; cancelling the caller leaves it running."""
    return await threads.submit(fn).outcome


async def finished(job: Job[T]) -> None:
    """Wait until `job` has ended, whatever its outcome; cancelling this wait does not
    cancel the job."""
    if not job.done():
        await job.ended()
