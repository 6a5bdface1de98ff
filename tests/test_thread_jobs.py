"""Thread jobs awaited from the loop: the outcome reaches the caller, and a cancelled
caller never abandons a job that is still running."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Iterator

import pytest

from filesvc import thread_jobs


@pytest.fixture
def executor() -> Iterator[thread_jobs.JobThreads]:
    threads = thread_jobs.JobThreads(2, "test-jobs")
    yield threads
    threads.shutdown()


async def test_the_caller_gets_the_result_or_the_error(executor: thread_jobs.JobThreads) -> None:
    running, outcome = thread_jobs.submit(executor, lambda: threading.current_thread().name)
    assert await outcome != threading.current_thread().name  # it ran in the pool
    assert running.done()

    def fails() -> None:
        raise OSError("disk gone")

    _, failing = thread_jobs.submit(executor, fails)
    with pytest.raises(OSError, match="disk gone"):
        await failing


async def test_a_cancelled_caller_leaves_the_job_running_and_can_wait_for_it(
    executor: thread_jobs.JobThreads,
) -> None:
    started, release = threading.Event(), threading.Event()
    ran_to_the_end: list[bool] = []

    def job() -> None:
        started.set()
        release.wait(5)
        ran_to_the_end.append(True)

    running, outcome = thread_jobs.submit(executor, job)
    waiting = asyncio.ensure_future(outcome)
    assert await asyncio.to_thread(started.wait, 5)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not running.done()  # the thread goes on

    until_finished = asyncio.create_task(thread_jobs.finished(running))
    for _ in range(20):
        await asyncio.sleep(0.001)
    assert not until_finished.done()
    release.set()
    await until_finished
    assert ran_to_the_end == [True]


async def test_cancelling_a_wait_for_the_job_does_not_cancel_it(
    executor: thread_jobs.JobThreads,
) -> None:
    started, release = threading.Event(), threading.Event()

    def job() -> bool:
        started.set()
        return release.wait(5)

    running, _ = thread_jobs.submit(executor, job)
    assert await asyncio.to_thread(started.wait, 5)
    until_finished = asyncio.create_task(thread_jobs.finished(running))
    await asyncio.sleep(0.001)
    until_finished.cancel()
    with pytest.raises(asyncio.CancelledError):
        await until_finished
    release.set()
    await thread_jobs.finished(running)
    assert running.outcome.result() is True


async def test_an_error_nobody_awaits_any_more_is_not_reported_as_lost(
    executor: thread_jobs.JobThreads,
) -> None:
    # The error reached (or was meant for) the cancelled caller; asyncio must not also
    # report it as "never retrieved" when the wait's future is collected.
    reported: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: reported.append(context))
    release = threading.Event()

    def fails() -> None:
        release.wait(5)
        raise OSError("reported elsewhere")

    running, outcome = thread_jobs.submit(executor, fails)
    waiting = asyncio.ensure_future(outcome)
    await asyncio.sleep(0)
    waiting.cancel()
    until_finished = asyncio.create_task(thread_jobs.finished(running))
    await asyncio.sleep(0)
    release.set()
    await until_finished
    await asyncio.sleep(0)
    del running, outcome, waiting, until_finished
    gc.collect()
    assert reported == []


async def test_threads_are_started_as_jobs_wait_and_reused_once_idle() -> None:
    threads = thread_jobs.JobThreads(3, "test-jobs")
    release, three_running = threading.Event(), threading.Event()
    names: list[str] = []

    def job() -> None:
        names.append(threading.current_thread().name)
        if len(names) == 3:
            three_running.set()
        release.wait(5)

    # Four jobs at once: three threads (the limit) run three of them together; the fourth
    # waits for one of them.
    jobs = [threads.submit(job) for _ in range(4)]
    assert await asyncio.to_thread(three_running.wait, 5)
    assert len(names) == 3
    assert len(set(names)) == 3
    release.set()
    for running in jobs:
        await running.outcome
    assert len(names) == 4
    # Idle threads take the next jobs: no new one is started.
    for _ in range(5):
        await thread_jobs.run(threads, job)
    assert len(set(names)) == 3
    threads.shutdown()
    with pytest.raises(RuntimeError):
        threads.submit(job)


class _Owner:
    """Stands for a blob writer: it keeps its last job, whose callable closes over it."""

    def __init__(self) -> None:
        self.payload = bytearray(1024)
        self.job: thread_jobs.Job[int] | None = None

    def submit(self, executor: thread_jobs.JobThreads) -> asyncio.Future[int]:
        self.job, outcome = thread_jobs.submit(executor, lambda: len(self.payload))
        return outcome


async def test_a_job_lets_go_of_its_callable_once_run(executor: thread_jobs.JobThreads) -> None:
    # Owner -> job -> closure -> owner is a cycle while the job holds its callable: the
    # bytes the owner holds would wait for the cyclic GC, not go with the last reference.
    gc.disable()
    try:
        owner = _Owner()
        assert await owner.submit(executor) == 1024
        gone = weakref.ref(owner)
        del owner
        assert gone() is None  # freed by its count, no collection needed
    finally:
        gc.enable()
