"""Limits of event streams: a per-user cap (counted in this process) and a lifetime."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TypeVar

from filesvc.transfers.errors import TooManyStreams


class StreamLimiter:
    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._open: Counter[str] = Counter()

    @contextmanager
    def slot(self, user_id: str) -> Iterator[None]:
        if self._open[user_id] >= self.per_user:
            raise TooManyStreams()
        self._open[user_id] += 1
        try:
            yield
        finally:
            self._open[user_id] -= 1
            if not self._open[user_id]:
                del self._open[user_id]

    def open_streams(self, user_id: str) -> int:
        return self._open[user_id]


T = TypeVar("T")


async def bounded(events: AsyncGenerator[T], seconds: float) -> AsyncIterator[T]:
    """`events` until they end or `seconds` pass; then an EventSource reconnects by itself
    (with Last-Event-ID), so no stream lives forever."""
    deadline = asyncio.get_running_loop().time() + seconds
    try:
        while True:
            # The timeout covers the wait for the next event only, never our own yield.
            try:
                async with asyncio.timeout_at(deadline):
                    event = await anext(events)
            except (StopAsyncIteration, TimeoutError):
                return
            yield event
    finally:
        with contextlib.suppress(RuntimeError):  # already closed by the timeout
            await events.aclose()
