"""SIGTERM on a real server: it turns not ready at once, lets an upload in flight finish
within the grace period, then exits; one that outlasts the grace is cut, leaving nothing.
And under `--workers 2`, /metrics adds up every worker."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.scrape import value

from .server import MiB, RunningServer, create_user, run_server, tmp_files, wait_for
from .wire import connect, read_response, request_head

pytestmark = pytest.mark.e2e

EXIT_DEADLINE = 20.0


def scrape(server: RunningServer) -> str:
    # A fresh connection each time: under --workers, any worker may answer.
    response = httpx.get(server.url("/metrics"), timeout=10, headers={"Connection": "close"})
    assert response.status_code == 200
    return response.text


def uploads_in_flight(server: RunningServer) -> float:
    return value(scrape(server), "filesvc_transfers_active", direction="upload")


def start_upload(server: RunningServer, token: str, declared: int, first: bytes) -> socket.socket:
    """A raw upload whose body is only partly sent, once the server is receiving it."""
    sock = connect(server, timeout=EXIT_DEADLINE)
    head = request_head(
        "PUT",
        "/api/v1/files/raw/in-flight.bin",
        [("Authorization", f"Bearer {token}"), ("Content-Length", str(declared))],
    )
    sock.sendall(head + first)
    wait_for(lambda: uploads_in_flight(server) == 1, timeout=10, what="the upload to start")
    return sock


def readyz(server: RunningServer) -> httpx.Response:
    return httpx.get(server.url("/readyz"), timeout=10)


def wait_for_exit(server: RunningServer) -> float:
    started = time.monotonic()
    wait_for(lambda: server.process.poll() is not None, timeout=EXIT_DEADLINE, what="the exit")
    return time.monotonic() - started


def rows(server: RunningServer) -> list[tuple[str, int, str]]:
    with sqlite3.connect(server.data_dir / "filesvc.db") as db:
        return db.execute("SELECT name, size, sha256 FROM files").fetchall()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path


def test_sigterm_lets_an_upload_in_flight_finish_then_exits(root: Path) -> None:
    data = os.urandom(4 * MiB)
    with run_server(root, {"FILESVC_SHUTDOWN_GRACE_SECONDS": "60"}) as server:
        editor = create_user(server, "editor")
        sock = start_upload(server, editor.token, len(data), data[: 1 * MiB])
        with sock:
            assert readyz(server).status_code == 200
            server.process.send_signal(signal.SIGTERM)
            # Still listening, but not ready: a load balancer stops sending work here.
            wait_for(
                lambda: readyz(server).status_code == 503, timeout=10, what="readyz to say 503"
            )
            assert readyz(server).json()["code"] == "shutting_down"
            assert httpx.get(server.url("/healthz"), timeout=10).status_code == 200
            assert server.process.poll() is None
            sock.sendall(data[1 * MiB :])
            response = read_response(sock)
        assert response.status == 201, response.body[:500]
        assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()
        # Nothing else in flight: it exits now, not at the end of the 60 s grace.
        assert wait_for_exit(server) < 15
    assert rows(server) == [("in-flight.bin", len(data), hashlib.sha256(data).hexdigest())]
    assert not tmp_files(server)


def test_an_upload_that_outlasts_the_grace_is_cut_and_leaves_nothing(root: Path) -> None:
    grace = 2.0
    env = {"FILESVC_SHUTDOWN_GRACE_SECONDS": str(grace)}
    with run_server(root, env) as server:
        editor = create_user(server, "editor")
        with start_upload(server, editor.token, 4 * MiB, os.urandom(1 * MiB)) as sock:
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            wait_for(
                lambda: readyz(server).status_code == 503, timeout=10, what="readyz to say 503"
            )
            wait_for_exit(server)
            assert time.monotonic() - signalled >= grace * 0.9, "it exited before the grace"
            # The upload was cut: whatever came back (if anything), it was no success.
            sock.settimeout(5)
            received = b""
            with contextlib.suppress(ConnectionError):
                while chunk := sock.recv(65536):
                    received += chunk
            assert not received.startswith(b"HTTP/1.1 2"), received[:200]
    assert rows(server) == []
    assert not tmp_files(server)


@pytest.fixture
def workers(tmp_path: Path, redis_url: str) -> Iterator[RunningServer]:
    env = {"FILESVC_REDIS_URL": redis_url}
    # Two workers import everything at once: slow to start on a busy machine.
    with run_server(tmp_path, env, ["--workers", "2"], startup_deadline=120) as server:
        yield server


def test_metrics_add_up_every_worker(workers: RunningServer) -> None:
    before = value(
        scrape(workers), "filesvc_http_requests_total", method="GET", route="/healthz", status="200"
    )
    for _ in range(20):
        response = httpx.get(workers.url("/healthz"), headers={"Connection": "close"}, timeout=10)
        assert response.status_code == 200
    # Every scrape, whichever worker answers it, counts the requests of both.
    for _ in range(6):
        after = value(
            scrape(workers),
            "filesvc_http_requests_total",
            method="GET",
            route="/healthz",
            status="200",
        )
        assert after == before + 20

    editor = create_user(workers, "editor")
    with start_upload(workers, editor.token, 2 * MiB, b"x" * MiB) as sock:
        for _ in range(6):  # a live gauge: the worker receiving it counts 1 for all
            assert uploads_in_flight(workers) == 1
        sock.sendall(b"y" * MiB)
        assert read_response(sock).status == 201
    for _ in range(6):
        assert uploads_in_flight(workers) == 0
        assert value(scrape(workers), "filesvc_uploads_total", outcome="created") == 1
