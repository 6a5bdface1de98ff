"""Pure ASGI middleware (never BaseHTTPMiddleware, which buffers streaming bodies)."""

from __future__ import annotations

import asyncio
import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from filesvc.errors import BodyTimeout
from filesvc.ids import uuid4_hex
from filesvc.observability.logs import REQUEST_ID
from filesvc.observability.metrics import Metrics, route_label
from filesvc.server.drain import Drain

access_log = logging.getLogger("filesvc.access")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Where a route marks what it moves (transfers/dependencies.py); downloads count as an
# active transfer while their body is sent.
DIRECTION_STATE = "transfer_direction"
_EVENT_STREAM = b"text/event-stream"
_OWN_HEADERS = (b"x-request-id", b"x-process-time")


class RequestContextMiddleware:
    """One layer for everything per request: X-Request-ID (the client's if sane, else new)
    and X-Process-Time; the request id in every log line while it is served; one access
    line (the path only, never the query string: it may hold a token); the request's
    metrics; the body idle timeout; and the count of requests in flight that a graceful
    stop waits for.

    `secret_after` names path segments whose remainder is a credential (`shared`, for
    share links): it is logged as `{token}`, whether or not the path matched a route, so a
    mistyped link (`…/<token>/`, `…//shared/<token>`) cannot leak it either.

    A request body that stops arriving for `body_idle_timeout` seconds while the app waits
    for it raises BodyTimeout there: the route's own failure path cleans up, and the
    client gets a 408 and a closed connection.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        drain: Drain,
        *,
        body_idle_timeout: float,
        secret_after: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.drain = drain
        self.body_idle_timeout = body_idle_timeout
        names = "|".join(map(re.escape, secret_after))
        self._secret_re = re.compile(f"(?is)(/(?:{names})/+)[^/].*") if secret_after else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = ""
        has_body = False
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _REQUEST_ID_RE.match(candidate):
                    request_id = candidate
            elif name == b"content-length":
                has_body = value != b"0"
            elif name == b"transfer-encoding":
                has_body = True
        request_id = request_id or uuid4_hex()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        context_token = REQUEST_ID.set(request_id)
        metrics, drain = self.metrics, self.drain
        status_code = 500
        received = sent = 0
        counted_in_flight = True
        gauge_stream = gauge_download = False
        drain.enter()

        body_done = not has_body
        idle = self.body_idle_timeout

        async def receive_timed() -> Message:
            nonlocal body_done, received
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout(idle):
                    message = await receive()
            except TimeoutError:
                body_done = True
                raise BodyTimeout(idle) from None
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                if size:
                    received += size
                    metrics.bytes_received.inc(size)
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal status_code, sent, counted_in_flight, gauge_stream, gauge_download
            if message["type"] == "http.response.start":
                status_code = message["status"]
                content_type = b""
                headers = []
                # One pass over the raw pairs (MutableHeaders scans them per call).
                for name, value in message.get("headers", ()):
                    name = name.lower()
                    if name == b"content-type":
                        content_type = value
                    elif name in _OWN_HEADERS:
                        continue  # ours replace any the app set
                    headers.append((name, value))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                process_time = f"{time.perf_counter() - started:.6f}".encode()
                headers.append((b"x-process-time", process_time))
                message["headers"] = headers
                if content_type.startswith(_EVENT_STREAM):
                    # A stream ends when its client leaves: a graceful stop does not wait.
                    counted_in_flight = False
                    drain.leave()
                    gauge_stream = True
                    metrics.event_streams.inc()
                elif state.get(DIRECTION_STATE) == "download" and status_code < 300:
                    gauge_download = True
                    metrics.downloads_active.inc()
            elif message["type"] == "http.response.body":
                size = len(message.get("body", b""))
                if size:
                    sent += size
                    metrics.bytes_sent.inc(size)
            await send(message)

        try:
            await self.app(scope, receive_timed if has_body else receive, send_with_headers)
        finally:
            REQUEST_ID.reset(context_token)
            if counted_in_flight:
                drain.leave()
            if gauge_stream:
                metrics.event_streams.dec()
            if gauge_download:
                metrics.downloads_active.dec()
            duration = time.perf_counter() - started
            route = route_label(scope, metrics.route_templates)
            method = scope["method"]
            metrics.observe_request(method, route, status_code, duration)
            path = self._redacted(_loggable_path(scope))
            client = _client(scope)
            access_log.info(
                '%s "%s %s" %d %.1fms id=%s',
                client,
                method,
                path,
                status_code,
                duration * 1000,
                request_id,
                extra={
                    "request_id": request_id,
                    "method": method,
                    "route": route,
                    "path": path,
                    "status": status_code,
                    "duration_ms": round(duration * 1000, 3),
                    "bytes_received": received,
                    "bytes_sent": sent,
                    "client": client,
                },
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
