"""Pure ASGI middleware (never BaseHTTPMiddleware, which buffers streaming bodies)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("filesvc.access")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    """Adds X-Request-ID (the client's if sane, else new) and X-Process-Time, and logs
    one access line per request: the path only, never the query string (it may hold a
    token)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _REQUEST_ID_RE.match(candidate):
                    request_id = candidate
                break
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status_code = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                headers["x-process-time"] = f"{time.perf_counter() - started:.6f}"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            access_log.info(
                '%s "%s %s" %d %.1fms id=%s',
                _client(scope),
                scope["method"],
                _loggable_path(scope),
                status_code,
                (time.perf_counter() - started) * 1000,
                request_id,
            )


def _loggable_path(scope: Scope) -> str:
    # The raw path is still percent-encoded, so a %0D%0A cannot start a forged log line.
    raw_path: bytes | None = scope.get("raw_path")
    if raw_path is not None:
        path = raw_path.decode("latin-1").split("?", 1)[0]
    else:
        path = scope["path"].encode("unicode_escape").decode("ascii")
    # A route whose last segment is a credential (a share link's token) keeps it out.
    template: str | None = getattr(scope.get("route"), "path", None)
    if template is not None and template.endswith("/{token}"):
        path = path.rsplit("/", 1)[0] + "/{token}"
    return path


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"
