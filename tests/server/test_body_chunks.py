"""Request bodies through filesvc's httptools protocol (server/body_chunks.py): every byte
arrives, in order, as bytes, whether the app reads as fast as they come or lets them pile
up past the high-water mark; with a real uvicorn server and a raw socket. A second read
comes before the socket pauses, and none after it until the app reads."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from filesvc.server import protocol
from filesvc.server.body_chunks import BODY_HIGH_WATER, BodyChunks
from tests.server.serving import serving

DEADLINE = 10.0
MIB = 1024 * 1024
UVLOOP_READ = 256_000  # the most uvloop reads from a socket at a time


def test_body_chunks_hand_over_one_chunk_as_is_and_several_joined() -> None:
    body = BodyChunks()
    assert len(body) == 0
    assert bytes(body) == b""
    chunk = os.urandom(1000)
    body += chunk
    assert len(body) == 1000
    assert bytes(body) is chunk  # no copy
    body += b"abc"
    assert len(body) == 1003
    assert bytes(body) == chunk + b"abc"


class DigestApp:
    """Reads the whole body, pausing `pause` seconds after each read, and answers its
    SHA-256 and how many reads it took; notes each body's type."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.body_types: set[type] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        digest, reads, more = hashlib.sha256(), 0, True
        while more:
            message = await receive()
            assert message["type"] == "http.request"
            self.body_types.add(type(message["body"]))
            digest.update(message["body"])
            reads += 1
            more = message.get("more_body", False)
            if self.pause:
                await asyncio.sleep(self.pause)  # lets the socket's bytes pile up
        answer = f"{digest.hexdigest()} {reads}".encode()
        headers = [(b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


async def post(port: int, body: bytes, pieces: int) -> tuple[str, int]:
    """POST `body` in `pieces` writes; the app's answer: the digest and its reads."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = f"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n")
        step = -(-len(body) // pieces)
        for start in range(0, len(body), step):
            writer.write(body[start : start + step])
            await writer.drain()
        async with asyncio.timeout(DEADLINE):
            response = await reader.read()  # to the end: the server closes after answering
    finally:
        writer.close()
    head_part, _, answer = response.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 200 OK"), response[:200]
    digest, reads = answer.decode().split()
    return digest, int(reads)


@pytest.mark.parametrize("pause", [0.0, 0.05], ids=["reading-at-once", "reading-slowly"])
async def test_every_byte_arrives_in_order_as_bytes(pause: float) -> None:
    body = os.urandom(3 * MIB + 17)
    app = DigestApp(pause)
    async with serving(app, protocol.HttpToolsWithDeadlines) as port:
        digest, reads = await post(port, body, pieces=48)
    assert digest == hashlib.sha256(body).hexdigest()
    assert app.body_types == {bytes}
    assert reads >= 2


class FakeTransport(asyncio.Transport):
    """Just what the protocol asks of a transport."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.wrote = asyncio.Event()
        self.reading = True
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data
        self.wrote.set()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class RecordingApp:
    """Notes each message's body; `first_read` is set once the first is taken."""

    def __init__(self) -> None:
        self.reads: list[bytes] = []
        self.first_read = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        more = True
        while more:
            message = await receive()
            self.reads.append(message["body"])
            more = message["more_body"]
            self.first_read.set()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def connected(app: RecordingApp) -> tuple[protocol.HttpToolsWithDeadlines, FakeTransport]:
    """filesvc's protocol on a fake transport: the test hands it the socket's reads."""
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
    server_state = uvicorn.server.ServerState()
    connection = protocol.HttpToolsWithDeadlines(config, server_state, app_state={})
    transport = FakeTransport()
    connection.connection_made(transport)
    return connection, transport


async def test_pieces_that_came_before_a_read_arrive_joined_and_a_lone_one_as_it_came() -> None:
    app = RecordingApp()
    connection, transport = connected(app)
    first, second, last = os.urandom(1000), os.urandom(2000), os.urandom(3000)
    connection.data_received(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 6000\r\n\r\n")
    # Both before the app's first read: they wait together.
    connection.data_received(first)
    connection.data_received(second)
    async with asyncio.timeout(DEADLINE):
        await app.first_read.wait()  # the last piece comes only now
    connection.data_received(last)
    async with asyncio.timeout(DEADLINE):
        await transport.wrote.wait()
    connection.connection_lost(None)

    assert app.reads == [first + second, last]
    assert [type(body) for body in app.reads] == [bytes, bytes]
    assert transport.written.startswith(b"HTTP/1.1 204 ")


async def test_a_second_read_comes_before_the_pause_and_both_arrive_as_one_message() -> None:
    app = RecordingApp()
    connection, transport = connected(app)
    # As uvloop reads a fast upload (256,000 bytes at a time), faster than the app takes it.
    first, second, last = os.urandom(UVLOOP_READ), os.urandom(UVLOOP_READ), os.urandom(500)
    length = len(first) + len(second) + len(last)
    head = f"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\n"
    connection.data_received(head.encode())
    connection.data_received(first)
    assert transport.reading  # uvicorn's own 64 KiB paused here, after every read
    connection.data_received(second)
    assert not transport.reading  # past the mark: nothing more until the app takes it
    async with asyncio.timeout(DEADLINE):
        await app.first_read.wait()
    assert app.reads == [first + second]  # what waited, in one message
    assert transport.reading
    connection.data_received(last)
    async with asyncio.timeout(DEADLINE):
        await transport.wrote.wait()
    connection.connection_lost(None)

    assert app.reads[1:] == [last]
    assert transport.written.startswith(b"HTTP/1.1 204 ")
    assert 2 * UVLOOP_READ > BODY_HIGH_WATER >= UVLOOP_READ
