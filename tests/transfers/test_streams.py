"""The SSE body: `retry:` first, frames as they come, pings when idle, a bounded life;
and the per-user cap."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from fastapi.sse import KEEPALIVE_COMMENT

from filesvc.transfers.errors import TooManyStreams
from filesvc.transfers.streams import PING_SECONDS, StreamEvent, StreamLimiter, sse_body


class FakeWatch:
    def __init__(self, events: list[StreamEvent | None]) -> None:
        self._events = events
        self.done = False

    async def next(self, within: float) -> StreamEvent | None:
        if not self._events:
            await asyncio.sleep(within)
            return None
        event = self._events.pop(0)
        if event is None:
            await asyncio.sleep(within)
        else:
            self.done = event.final
        return event


def frame(n: int, final: bool = False) -> StreamEvent:
    return StreamEvent.of(str(n), "complete" if final else "progress", '{"n":1}', final=final)


async def collect(watch: FakeWatch, lifetime: float, ping: float) -> list[bytes]:
    return [f async for f in sse_body(watch, retry_ms=1500, lifetime=lifetime, ping=ping)]


async def test_events_pings_and_the_end() -> None:
    watch = FakeWatch([frame(1), None, frame(2, final=True)])
    frames = await collect(watch, lifetime=10, ping=0.01)
    assert frames == [b"retry: 1500\n\n", frame(1).sse, KEEPALIVE_COMMENT, frame(2, True).sse]
    assert frame(1).sse == b'event: progress\ndata: {"n":1}\nid: 1\n\n'


def test_idle_streams_are_pinged_every_15_seconds() -> None:
    # The routes call sse_body without `ping`: its default is what every stream gets.
    assert PING_SECONDS == 15
    assert inspect.signature(sse_body).parameters["ping"].default == PING_SECONDS


async def test_a_stream_lives_no_longer_than_its_lifetime() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    frames = await collect(FakeWatch([]), lifetime=0.2, ping=0.05)
    assert 0.2 <= loop.time() - started < 1
    assert frames[0] == b"retry: 1500\n\n"
    assert set(frames[1:]) == {KEEPALIVE_COMMENT}


def test_streams_per_user_are_capped() -> None:
    limiter = StreamLimiter(per_user=2)
    with limiter.slot("u"), limiter.slot("u"):
        with pytest.raises(TooManyStreams):  # noqa: SIM117
            with limiter.slot("u"):
                pass
        with limiter.slot("other"):
            assert limiter.open_streams("u") == 2
    assert limiter.open_streams("u") == 0
