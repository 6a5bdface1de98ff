"""The graceful stop: on SIGTERM an instance turns not ready at once but keeps serving;
requests in flight (event streams aside, they never end by themselves) get up to the
grace period to finish, and only then does uvicorn's own shutdown close the listener and
cut what is left. A load balancer polling /readyz meanwhile stops sending new work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from types import FrameType

from uvicorn import Server

logger = logging.getLogger(__name__)
# For requests cut at the end to clean up (remove temp files, abort S3 uploads).
CLEANUP_SECONDS = 5


class Drain:
    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.draining = False
        self.in_flight = 0  # requests being served, event streams not counted
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if not self.in_flight:
            self._idle.set()

    def install(self) -> None:
        """Take SIGTERM over from the uvicorn server running this app, if one does (an app
        under test in a plain event loop keeps the default handler)."""
        if threading.current_thread() is not threading.main_thread():
            return
        server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
        if not isinstance(server, Server):
            return
        loop = asyncio.get_running_loop()

        def on_sigterm(sig: int, frame: FrameType | None) -> None:
            if self.draining:  # a second SIGTERM: stop now
                server.handle_exit(sig, frame)
                return
            self.draining = True
            loop.call_soon_threadsafe(self._start, server, sig)

        signal.signal(signal.SIGTERM, on_sigterm)

    def _start(self, server: Server, sig: int) -> None:
        self._task = asyncio.create_task(self._drain(server, sig))

    async def _drain(self, server: Server, sig: int) -> None:
        logger.info(
            "SIGTERM: not ready; %d request(s) in flight get up to %gs to finish",
            self.in_flight,
            self.grace,
        )
        if self.in_flight:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self.grace)
        if self.in_flight:
            logger.warning("grace period over: cutting %d request(s) in flight", self.in_flight)
        # What is left (event streams, late requests) is cut as if its client had gone:
        # each request's own disconnect handling cleans up, rather than a cancellation
        # out of uvicorn that would end each in a traceback. Idle connections, and those
        # still flushing a finished response, are left to uvicorn's orderly close.
        for connection in list(server.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            if cycle is not None and not cycle.response_complete:
                connection.transport.abort()
        server.config.timeout_graceful_shutdown = CLEANUP_SECONDS
        server.handle_exit(sig, None)
