"""What the files tests share: a log of the requests that reach the router, and a client
of the same service built without one of its layers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from filesvc.config import Settings
from filesvc.main import create_app
from tests.conftest import client_for


class RouterLog:
    """Records each request that got past the hot layers (reads, uploads) to the router."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def middleware(self) -> Middleware:
        log = self

        class Recorder:
            def __init__(self, app: ASGIApp) -> None:
                self.app = app

            async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
                if scope["type"] == "http":
                    log.paths.append(scope["path"])
                await self.app(scope, receive, send)

        return Middleware(Recorder)


@pytest.fixture
def routed(app: FastAPI) -> RouterLog:
    # Innermost (the last of user_middleware): between the hot reads and the router. Set
    # before the first request, which builds the middleware stack.
    assert app.middleware_stack is None
    log = RouterLog()
    app.user_middleware.append(log.middleware())
    return log


@asynccontextmanager
async def client_without(settings: Settings, layer: type) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same service (database, storage, key) built without `layer`."""
    plain = create_app(settings)
    kept = [m for m in plain.user_middleware if m.cls is not layer]  # type: ignore[comparison-overlap]
    assert len(kept) == len(plain.user_middleware) - 1
    plain.user_middleware = kept
    async with plain.router.lifespan_context(plain), client_for(plain) as client:
        yield client
