"""A bare socket sink: the most a Python server can make of a durable upload on this machine.

No framework, no event loop, no database: one connection at a time, a `Content-Length`
body read with `recv_into` into a ring of reused buffers, each written to a new file
while a second thread hashes it (SHA-256, which runs without the GIL), then an fsync of
the file and of its directory, and a 201 with the digest. That is the work a raw filesvc
upload cannot avoid. Measured in the same run as `dd conv=fsync` and filesvc, it shows
how much of the distance to dd is this machine's and how much is filesvc's.

`python -m tests.benchmarks.socket_sink PORT DIR` serves until SIGTERM; the bench drives
it with `SocketSink`.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from tests.benchmarks.common import MIB, REPO, BenchError
from tests.benchmarks.processes import free_port, start_logged, stop_process, tail, wait_until
from tests.benchmarks.transfers import curl_upload

BUFFER_BYTES = MIB
# The hash thread may hold one buffer and the queue QUEUED more; the reader fills the
# next one. With QUEUED + 2 buffers in the ring, a put() that returns means the buffer
# about to be refilled has been hashed.
QUEUED = 4
RING = QUEUED + 2


def _read_head(conn: socket.socket) -> tuple[dict[str, str], bytes]:
    """The request's headers (lower-cased names) and whatever body bytes came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            raise ConnectionError("closed before the end of the headers")
        data += more
    head, rest = data.split(b"\r\n\r\n", 1)
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, rest


def _store(conn: socket.socket, fd: int, first: bytes, length: int) -> str:
    """Write `length` body bytes (`first` already read) to `fd`; their SHA-256 hex."""
    digest = hashlib.sha256(first)
    os.write(fd, first)
    chunks: queue.Queue[memoryview | None] = queue.Queue(maxsize=QUEUED)

    def hash_chunks() -> None:
        while (chunk := chunks.get()) is not None:
            digest.update(chunk)

    hasher = threading.Thread(target=hash_chunks)
    hasher.start()
    ring = [memoryview(bytearray(BUFFER_BYTES)) for _ in range(RING)]
    received, turn = len(first), 0
    try:
        while received < length:
            buffer, filled = ring[turn % RING], 0
            turn += 1
            while filled < BUFFER_BYTES and received + filled < length:
                want = min(BUFFER_BYTES - filled, length - received - filled)
                count = conn.recv_into(buffer[filled:], want)
                if not count:
                    raise ConnectionError("closed before the end of the body")
                filled += count
            received += filled
            chunks.put(buffer[:filled])
            os.write(fd, buffer[:filled])
    finally:
        chunks.put(None)
        hasher.join()
    return digest.hexdigest()


def _serve_one(conn: socket.socket, directory: Path) -> None:
    headers, first = _read_head(conn)
    length = int(headers["content-length"])
    if headers.get("expect", "").lower() == "100-continue":
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    path = directory / uuid.uuid4().hex
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        sha256 = _store(conn, fd, first, length)
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    body = json.dumps({"sha256": sha256, "size": path.stat().st_size}).encode()
    head = f"HTTP/1.1 201 Created\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    conn.sendall(head.encode() + body)
    path.unlink()  # as the bench deletes filesvc's upload and dd's copy


def serve(port: int, directory: Path) -> None:
    with socket.create_server(("127.0.0.1", port)) as server:
        print("ready", flush=True)
        while True:
            conn, _ = server.accept()
            with conn:
                _serve_one(conn, directory)


class SocketSink:
    """The sink as a child process on a free loopback port, storing into `directory`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.directory = root / "sink"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "socket-sink.log"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError("the socket sink is not running")
        return self.proc.pid

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "tests.benchmarks.socket_sink", str(self.port)]
        self.proc = start_logged([*cmd, str(self.directory)], self.log_path, cwd=REPO)
        wait_until(lambda: "ready" in tail(self.log_path), 30, "socket sink", self.proc)

    def upload(self, src: Path, sha256: str, work: Path) -> None:
        """`curl -T src`, checked: a 201 with the file's size and SHA-256."""
        url = f"http://127.0.0.1:{self.port}/{src.name}"
        result = curl_upload(["-T", str(src), url], work / "sink-resp.json")
        expected = {"sha256": sha256, "size": src.stat().st_size}
        if result.http_code != 201 or json.loads(result.body or "{}") != expected:
            raise BenchError(f"socket sink answered {result.http_code}: {result.body[:300]}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, "socket sink")
            self.proc = None


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]))
