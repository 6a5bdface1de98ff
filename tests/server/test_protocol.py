"""The connection deadlines of filesvc/server/protocol.py, on both of uvicorn's HTTP
implementations (httptools is what `serve` picks when installed; h11 otherwise), with a
real uvicorn server on a loopback port and raw sockets. The e2e suite checks the same
against `filesvc serve` itself."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from starlette.types import Message, Receive, Scope, Send

from filesvc.server import protocol
from tests.server.serving import serving

HEADER_TIMEOUT = 0.5
SEND_TIMEOUT = 0.5
DEADLINE = 10.0
CHUNK = b"x" * 65536


class EndlessApp:
    """/stream sends bytes until its client is gone; anything else answers `ok`."""

    def __init__(self) -> None:
        self.client_gone = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        if scope["path"] != "/stream":
            headers = [(b"content-length", b"2")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})

        async def watch() -> None:
            message: Message = await receive()
            while message["type"] != "http.disconnect":
                message = await receive()
            self.client_gone.set()

        watcher = asyncio.create_task(watch())
        while not self.client_gone.is_set():
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await watcher


@pytest.fixture(params=["HttpToolsWithDeadlines", "H11WithDeadlines"])
async def server(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[int, EndlessApp]]:
    monkeypatch.setenv("FILESVC_HEADER_TIMEOUT_SECONDS", str(HEADER_TIMEOUT))
    monkeypatch.setenv("FILESVC_SEND_TIMEOUT_SECONDS", str(SEND_TIMEOUT))
    protocol._deadlines.cache_clear()
    app = EndlessApp()
    try:
        async with serving(app, getattr(protocol, request.param)) as port:
            yield port, app
    finally:
        protocol._deadlines.cache_clear()


@asynccontextmanager
async def closing(writer: asyncio.StreamWriter) -> AsyncIterator[None]:
    try:
        yield
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def closed(reader: asyncio.StreamReader) -> float:
    """Seconds until the server ends the connection (EOF or reset)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(DEADLINE):
        try:
            while await reader.read(65536):
                pass
        except ConnectionResetError:
            pass
    return loop.time() - started


async def test_a_head_that_never_completes_is_closed(server: tuple[int, EndlessApp]) -> None:
    port, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    async with closing(writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert await closed(reader) >= HEADER_TIMEOUT * 0.8


async def test_a_prompt_head_is_served_and_keeps_its_connection(
    server: tuple[int, EndlessApp],
) -> None:
    port, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    async with closing(writer):
        for _ in range(3):  # the deadline is per request head, not per connection
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
            assert head.startswith(b"HTTP/1.1 200")
            assert await reader.readexactly(2) == b"ok"
            await asyncio.sleep(HEADER_TIMEOUT * 0.6)


async def test_a_client_that_stops_reading_is_dropped(server: tuple[int, EndlessApp]) -> None:
    port, app = server
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    _reader, writer = await asyncio.open_connection(sock=sock)
    async with closing(writer):
        writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        # Never read: the buffers fill, uvicorn's send waits, and the deadline cuts it.
        await asyncio.wait_for(app.client_gone.wait(), DEADLINE)
