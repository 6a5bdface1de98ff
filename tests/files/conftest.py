"""What the files tests share: a log of the requests that reach the router."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send


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
