"""A real uvicorn server on a loopback port, in the test's own event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.types import ASGIApp

STOP_DEADLINE = 10.0


@asynccontextmanager
async def serving(app: ASGIApp, http: type[asyncio.Protocol]) -> AsyncIterator[int]:
    """Serve `app` with the `http` protocol class; yields the port."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http=http,
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    # _serve, not serve: the test process keeps its own signal handlers.
    task = asyncio.create_task(server._serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, no event)
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, STOP_DEADLINE)
