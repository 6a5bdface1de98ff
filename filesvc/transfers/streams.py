"""Event streams to clients: what one event looks like on the wire, the SSE body with its
pings and lifetime, and the per-user cap on open streams.

A frame is formatted once per event (fastapi.sse's `format_sse_event`) and the same bytes
go to every watcher: with a thousand watchers, the per-watcher cost is one queue hop and
one socket write. That is also why streams are plain `EventSourceResponse` bodies rather
than generator routes, whose framing spends two tasks and two memory streams per watcher.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from fastapi.sse import KEEPALIVE_COMMENT, EventSourceResponse, format_sse_event

from filesvc.transfers.errors import TooManyStreams

PING_SECONDS = 15.0
# OpenAPI for a route answering with an event stream.
EVENT_STREAM = {"text/event-stream": {"schema": {"type": "string"}}}


@dataclass(frozen=True, slots=True)
class StreamEvent:
    id: str
    event: str
    data_json: str
    final: bool
    sse: bytes

    @classmethod
    def of(cls, event_id: str, event: str, data_json: str, *, final: bool) -> StreamEvent:
        frame = format_sse_event(data_str=data_json, event=event, id=event_id)
        return cls(event_id, event, data_json, final, frame)

    def websocket_text(self) -> str:
        return f'{{"event":"{self.event}","data":{self.data_json}}}'


class Watch(Protocol):
    """One client's view of a stream of events."""

    @property
    def done(self) -> bool: ...

    async def next(self, within: float) -> StreamEvent | None:
        """The next event, or None if none comes within `within` seconds."""
        ...


async def sse_body(
    watch: Watch, *, retry_ms: int, lifetime: float, ping: float = PING_SECONDS
) -> AsyncIterator[bytes]:
    """`retry:`, then the events, with `: ping` when idle, until the last event or the end
    of the stream's lifetime (after which an EventSource reconnects by itself)."""
    yield format_sse_event(retry=retry_ms)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lifetime
    while not watch.done:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        event = await watch.next(min(ping, remaining))
        if event is not None:
            yield event.sse
        elif deadline - loop.time() > 0:
            yield KEEPALIVE_COMMENT


def event_stream(body: AsyncIterator[bytes]) -> EventSourceResponse:
    # The headers FastAPI's generator routes set: no caching, no proxy buffering.
    return EventSourceResponse(
        body, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


class StreamLimiter:
    """Open streams per user, in this process."""

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
