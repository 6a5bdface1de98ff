"""uvicorn's HTTP protocols with two deadlines uvicorn does not enforce by itself, so they
hold even when nothing fronts the service:

- a request head (request line and headers) must be complete within the header timeout
  of the connection opening or of its first byte after a response, else the connection
  is closed (a slowloris client otherwise holds it forever);
- a response the client stops reading is dropped once the transport's write buffer has
  stayed full for the send timeout (uvicorn's `send` otherwise waits in `drain()` for
  good: an event stream to a stalled client would never end).

`filesvc serve` passes one of these classes as uvicorn's `http` setting. The httptools one
also takes request bodies without uvicorn's two copies of every byte (body_chunks.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from filesvc.config import Settings
from filesvc.server.body_chunks import ChunkedBody

logger = logging.getLogger(__name__)


@functools.cache
def _deadlines() -> tuple[float, float]:
    settings = Settings()  # `filesvc serve` validated it already, in this very environment
    return settings.header_timeout_seconds, settings.send_timeout_seconds


class _Deadlines(asyncio.Protocol):
    """Mixed in before a uvicorn protocol class: each hook runs the deadlines' part around
    the protocol's own (`super()` is the uvicorn class)."""

    # What the uvicorn protocol classes below provide.
    transport: asyncio.Transport
    cycle: Any
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout, self._send_timeout = _deadlines()
        self._head_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        waiting_for_head, cycle = self._between_requests(), self.cycle
        super().data_received(data)
        if waiting_for_head:
            self._after_head_data(cycle)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._on_pause_writing()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._on_resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost()
        super().connection_lost(exc)

    def _owns_transport(self) -> bool:
        protocol: object = self.transport.get_protocol()
        return protocol is self

    def _between_requests(self) -> bool:
        return self.cycle is None or bool(self.cycle.response_complete)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self._header_timeout, self._head_late)

    def _disarm(self, timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()

    def _head_late(self) -> None:
        self._head_timer = None
        # After a WebSocket upgrade the transport belongs to another protocol.
        if self.transport.is_closing() or not self._owns_transport():
            return
        if self._between_requests():
            logger.info("closing a connection: no request head within %gs", self._header_timeout)
            self.transport.close()

    def _send_stalled(self) -> None:
        self._stall_timer = None
        if not self._owns_transport():
            return
        logger.info("dropping a connection whose client read nothing for %gs", self._send_timeout)
        # abort, not close: close would wait to flush a buffer nobody reads.
        self.transport.abort()

    def _after_head_data(self, cycle_before: Any) -> None:
        """Bytes of a request head came in: the head is complete if they started a new
        request, else its deadline runs from its first byte. Armed only then, not before
        each head: nearly every head comes in one piece, and a timer made and cancelled
        per request is work on the loop for nothing."""
        if self.cycle is not cycle_before:  # a new request's head is complete
            self._disarm(self._head_timer)
            self._head_timer = None
        else:
            self._arm_head_timer()

    def _on_pause_writing(self) -> None:
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self._send_timeout, self._send_stalled)

    def _on_resume_writing(self) -> None:
        self._disarm(self._stall_timer)
        self._stall_timer = None

    def _on_lost(self) -> None:
        self._disarm(self._head_timer)
        self._disarm(self._stall_timer)
        self._head_timer = self._stall_timer = None


class HttpToolsWithDeadlines(_Deadlines, ChunkedBody, HttpToolsProtocol):
    """Also hands request bodies to the app without uvicorn's copies (body_chunks.py)."""


class H11WithDeadlines(_Deadlines, H11Protocol):
    pass


def protocol_class() -> str:
    """The import string for uvicorn's `http` setting: httptools when installed, as
    uvicorn's own "auto" would choose."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "filesvc.server.protocol:H11WithDeadlines"
    return "filesvc.server.protocol:HttpToolsWithDeadlines"
