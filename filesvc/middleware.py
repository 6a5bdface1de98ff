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
    token).

    `secret_after` names path segments whose remainder is a credential (`shared`, for
    share links): it is logged as `{token}`, whether or not the path matched a route, so a
    mistyped link (`…/<token>/`, `…//shared/<token>`) cannot leak it either.
    """

    def __init__(self, app: ASGIApp, secret_after: tuple[str, ...] = ()) -> None:
        self.app = app
        names = "|".join(map(re.escape, secret_after))
        self._secret_re = re.compile(f"(?is)(/(?:{names})/+)[^/].*") if secret_after else None

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
                self._redacted(_loggable_path(scope)),
                status_code,
                (time.perf_counter() - started) * 1000,
                request_id,
            )

    def _redacted(self, path: str) -> str:
        return self._secret_re.sub(r"\1{token}", path) if self._secret_re else path


def _loggable_path(scope: Scope) -> str:
    # The raw path is still percent-encoded, so a %0D%0A cannot start a forged log line.
    raw_path: bytes | None = scope.get("raw_path")
    if raw_path is not None:
        return raw_path.decode("latin-1").split("?", 1)[0]
    path: str = scope["path"]
    return path.encode("unicode_escape").decode("ascii")


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"
