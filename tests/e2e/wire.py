"""The client side of the e2e suite: curl, and raw HTTP over a socket.

The raw-socket client exists because the interesting cases (bodies cut in half, bodies
that lie about their length, headers a library would refuse to send or parse) are
exactly the ones httpx and curl are built to prevent.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import struct
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .server import RunningServer

# --- curl ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurlResult:
    returncode: int
    status: int
    headers: list[tuple[str, str]]
    body_path: Path
    stderr: str

    @property
    def body(self) -> bytes:
        return self.body_path.read_bytes()

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.get_all(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


def _last_header_block(raw: bytes) -> list[tuple[str, str]]:
    # -D writes every response of the exchange (a `100 Continue` first, say); keep the last.
    blocks = [block for block in raw.split(b"\r\n\r\n") if block.strip()]
    if not blocks:
        return []
    lines = blocks[-1].split(b"\r\n")[1:]
    headers = []
    for line in lines:
        key, _, value = line.decode("latin-1").partition(":")
        headers.append((key.strip(), value.strip()))
    return headers


def run_curl(
    curl: str,
    workdir: Path,
    *args: str,
    stdin: Path | None = None,
    output: Path | None = None,
    timeout: float = 120.0,
) -> CurlResult:
    """Run curl once; return the final status, headers and where the body went."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(4)
    headers_path = workdir / f"curl-{tag}.headers"
    body_path = output or workdir / f"curl-{tag}.body"
    command = [curl, "-sS", "-D", str(headers_path), "-o", str(body_path), "-w", "%{http_code}"]
    with (stdin or Path(os.devnull)).open("rb") as stdin_file:
        completed = subprocess.run(
            [*command, *args],
            stdin=stdin_file,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    raw_headers = headers_path.read_bytes() if headers_path.exists() else b""
    if not body_path.exists():
        body_path.write_bytes(b"")
    return CurlResult(
        returncode=completed.returncode,
        status=int(completed.stdout.decode() or 0),
        headers=_last_header_block(raw_headers),
        body_path=body_path,
        stderr=completed.stderr.decode(errors="replace"),
    )


def bearer(token: str) -> str:
    """A curl `-H` argument."""
    return f"Authorization: Bearer {token}"


def curl_put_file(
    curl: str, workdir: Path, token: str, path: Path, url: str, *args: str
) -> dict[str, Any]:
    """`curl -T path url` with the token; the created file's JSON (asserting a 201)."""
    result = run_curl(curl, workdir, "-H", bearer(token), *args, "-T", str(path), url)
    assert result.returncode == 0, result.stderr
    assert result.status == 201, result.body[:2000]
    file: dict[str, Any] = result.json()
    return file


# --- raw HTTP over a socket ------------------------------------------------------------


@dataclass(frozen=True)
class RawResponse:
    status: int
    header_lines: list[bytes]  # exactly as received, without the CRLFs
    body: bytes

    @property
    def headers(self) -> list[tuple[str, str]]:
        pairs = []
        for line in self.header_lines:
            key, _, value = line.decode("latin-1").partition(":")
            pairs.append((key.strip().lower(), value.strip()))
        return pairs

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]

    def header(self, name: str) -> str | None:
        values = self.get_all(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


def connect(server: RunningServer, timeout: float = 15.0) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=timeout)


def request_head(
    method: str,
    target: bytes | str,
    headers: Iterable[tuple[str, str | bytes]] = (),
    *,
    host: str = "127.0.0.1",
) -> bytes:
    raw_target = target.encode("ascii") if isinstance(target, str) else target
    lines = [method.encode() + b" " + raw_target + b" HTTP/1.1", b"Host: " + host.encode()]
    for key, value in headers:
        lines.append(
            key.encode("latin-1")
            + b": "
            + (value if isinstance(value, bytes) else value.encode("latin-1"))
        )
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def fill(self) -> None:
        chunk = self.sock.recv(256 * 1024)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-response")
        self.buffer += chunk

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self.fill()
        data, _, self.buffer = self.buffer.partition(marker)
        return data

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def rest(self) -> bytes:
        while True:
            try:
                self.fill()
            except ConnectionError:
                data, self.buffer = self.buffer, b""
                return data


def read_response(sock: socket.socket, *, to_head: bool = False) -> RawResponse:
    """Read one response (skipping any 1xx) with its body (none if it answers a HEAD)."""
    reader = _Reader(sock)
    while True:
        head = reader.until(b"\r\n\r\n").split(b"\r\n")
        status = int(head[0].split(b" ")[1])
        if not 100 <= status < 200:
            break
    response = RawResponse(status, head[1:], b"")
    if to_head or status in (204, 304):
        return response
    if (response.header("transfer-encoding") or "").lower() == "chunked":
        body = b""
        while size := int(reader.until(b"\r\n").split(b";")[0], 16):
            body += reader.exactly(size)
            reader.until(b"\r\n")
        reader.until(b"\r\n")
    elif (length := response.header("content-length")) is not None:
        body = reader.exactly(int(length))
    else:
        body = reader.rest()
    return RawResponse(status, head[1:], body)


def read_early_response(sock: socket.socket) -> RawResponse:
    """The answer to a request whose body was never finished (see PartialSender)."""
    try:
        return read_response(sock)
    except TimeoutError:
        pytest.fail("no answer while the body was incomplete: the server waited for all of it")


def raw_exchange(server: RunningServer, head: bytes, body: bytes = b"") -> RawResponse:
    """Send a whole request on a fresh connection and read the answer."""
    with connect(server) as sock:
        sock.sendall(head + body)
        return read_response(sock, to_head=head.startswith(b"HEAD "))


def reset_close(sock: socket.socket) -> None:
    """Close abruptly: SO_LINGER 0 makes the kernel send RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class PartialSender:
    """Sends a request head and at most `stop_after` body bytes from a thread, then stops
    and leaves the connection open.

    A response read meanwhile provably came before the server had the whole body. The
    thread keeps the reading side free to see an early answer even when the server stops
    reading and the socket buffers fill.
    """

    def __init__(
        self, sock: socket.socket, head: bytes, body: Iterable[bytes], stop_after: int
    ) -> None:
        self.sock = sock
        self.sent = 0
        self.error: OSError | None = None
        self._head = head
        self._body = body
        self._stop_after = stop_after
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PartialSender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # Unblocks a sendall() the server no longer reads, then waits for the thread.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            self.sock.sendall(self._head)
            for chunk in self._body:
                if self.sent >= self._stop_after:
                    return
                self.sock.sendall(chunk)
                self.sent += len(chunk)
        except OSError as exc:  # the server answered early and closed: allowed
            self.error = exc


def junk(total: int, chunk: int = 256 * 1024) -> Iterator[bytes]:
    block = os.urandom(chunk)
    remaining = total
    while remaining:
        piece = block[: min(chunk, remaining)]
        remaining -= len(piece)
        yield piece


def chunked(chunks: Iterable[bytes], *, end: bool = True) -> Iterator[bytes]:
    """Transfer-Encoding: chunked framing."""
    for data in chunks:
        yield f"{len(data):x}\r\n".encode() + data + b"\r\n"
    if end:
        yield b"0\r\n\r\n"


# --- multipart bodies built by hand ----------------------------------------------------


def part(
    boundary: bytes,
    disposition: bytes,
    data: bytes,
    content_type: bytes | None = b"application/octet-stream",
) -> bytes:
    head = b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n"
    if content_type is not None:
        head += b"Content-Type: " + content_type + b"\r\n"
    return head + b"\r\n" + data + b"\r\n"


def closing(boundary: bytes) -> bytes:
    return b"--" + boundary + b"--\r\n"


def multipart_content_type(boundary: bytes) -> str:
    return "multipart/form-data; boundary=" + boundary.decode("ascii")
