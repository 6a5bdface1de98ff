"""Slow and stalled clients against a real server, over raw sockets: a request head that
never completes, a request body that stops arriving, an event stream nobody reads. Each
is cut after its timeout (set short here), and nothing is left behind."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.scrape import value

from .conftest import on_both_stacks
from .server import MiB, RunningServer, User, assert_nothing_kept, snapshot, tmp_files, wait_for
from .wire import (
    PartialSender,
    connect,
    junk,
    multipart_content_type,
    read_response,
    request_head,
)

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT = 2.0
BODY_IDLE_TIMEOUT = 2.0
SEND_TIMEOUT = 1.0
# Generous: the machine may be busy; what matters is that the cut comes at all.
CUT_DEADLINE = 20.0
BOUNDARY = b"e2e-stall-boundary"

server_process = on_both_stacks(
    env={
        "FILESVC_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "FILESVC_BODY_IDLE_TIMEOUT_SECONDS": str(BODY_IDLE_TIMEOUT),
        "FILESVC_SEND_TIMEOUT_SECONDS": str(SEND_TIMEOUT),
    }
)


def closed_by_server(sock: socket.socket, *, within: float) -> float:
    """Seconds until the server closes `sock` (EOF or reset); fails past `within`. Whatever
    the server sends meanwhile is read and dropped."""
    started = time.monotonic()
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for over {within:.0f}s")
    return time.monotonic() - started


def scrape(server: RunningServer) -> str:
    response = httpx.get(server.url("/metrics"), timeout=10)
    assert response.status_code == 200
    return response.text


# --- the request head ------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed(server: RunningServer) -> None:
    with connect(server) as sock:
        waited = closed_by_server(sock, within=CUT_DEADLINE)
    assert waited >= HEADER_TIMEOUT * 0.8


def test_a_request_head_that_stops_halfway_is_closed(server: RunningServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        waited = closed_by_server(sock, within=CUT_DEADLINE)
    assert waited >= HEADER_TIMEOUT * 0.8


def test_the_next_request_head_on_a_kept_alive_connection_has_the_same_deadline(
    server: RunningServer,
) -> None:
    with connect(server) as sock:
        sock.sendall(request_head("GET", "/healthz"))
        assert read_response(sock).status == 200
        # A head sent in pieces, all within the timeout, is served...
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"\r\n"):
            sock.sendall(piece)
            time.sleep(HEADER_TIMEOUT / 5)
        assert read_response(sock).status == 200
        # ...one that stops is not.
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed_by_server(sock, within=CUT_DEADLINE)
    server.assert_serving()


# --- the request body ------------------------------------------------------------------


def stalled_upload(user: User, kind: str) -> tuple[bytes, Iterator[bytes]]:
    """A head promising 12 MiB and a body that stops after 6 (past one S3 part, so on S3
    a multipart upload is open when it stalls)."""
    auth = ("Authorization", f"Bearer {user.token}")
    declared = 12 * MiB
    if kind == "raw":
        head = request_head(
            "PUT", "/api/v1/files/raw/stall.bin", [auth, ("Content-Length", str(declared))]
        )
        return head, junk(6 * MiB)
    headers = [
        auth,
        ("Content-Type", multipart_content_type(BOUNDARY)),
        ("Content-Length", str(declared)),
    ]
    part_head = (
        b"--" + BOUNDARY + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="stall.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    return request_head("POST", "/api/v1/files", headers) + part_head, junk(6 * MiB)


@pytest.mark.parametrize("kind", ["raw", "multipart"])
def test_an_upload_whose_body_stops_gets_a_408_and_leaves_nothing(
    server: RunningServer, editor: User, kind: str
) -> None:
    before = snapshot(server)
    timeouts_before = value(scrape(server), "filesvc_uploads_total", outcome="body_timeout")
    head, body = stalled_upload(editor, kind)
    with (
        connect(server, timeout=CUT_DEADLINE) as sock,
        PartialSender(sock, head, body, 6 * MiB) as sender,
    ):
        response = read_response(sock)
        assert response.status == 408, response.body[:500]
        assert response.json()["code"] == "request_timeout"
        assert response.header("connection") == "close"
        closed_by_server(sock, within=CUT_DEADLINE)
    assert sender.sent == 6 * MiB  # it was answered only once the body had stalled
    wait_for(lambda: not tmp_files(server), timeout=10, what="the temp file to be removed")
    assert_nothing_kept(server, before)
    after = value(scrape(server), "filesvc_uploads_total", outcome="body_timeout")
    assert after == timeouts_before + 1


def test_a_slow_body_that_keeps_moving_is_not_cut(server: RunningServer, editor: User) -> None:
    chunks = [b"x" * 1000] * 4
    head = request_head(
        "PUT",
        "/api/v1/files/raw/slow.bin",
        [("Authorization", f"Bearer {editor.token}"), ("Content-Length", str(4000))],
    )
    with connect(server, timeout=CUT_DEADLINE) as sock:
        sock.sendall(head)
        for chunk in chunks:  # gaps shorter than the timeout, a total longer than it
            time.sleep(BODY_IDLE_TIMEOUT * 0.6)
            sock.sendall(chunk)
        response = read_response(sock)
    assert response.status == 201, response.body[:500]
    assert response.json()["size"] == 4000


# --- the response ----------------------------------------------------------------------


def test_an_event_stream_whose_client_stops_reading_is_dropped(
    server: RunningServer, editor: User
) -> None:
    streams_before = value(scrape(server), "filesvc_event_streams_active")
    # A tiny receive window: the server's buffers fill after a few MiB of events.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(CUT_DEADLINE)
    sock.connect((server.host, server.port))
    with sock:
        sock.sendall(
            request_head("GET", "/api/v1/events", [("Authorization", f"Bearer {editor.token}")])
        )
        assert read_response(sock, to_head=True).status == 200
        wait_for(
            lambda: value(scrape(server), "filesvc_event_streams_active") == streams_before + 1,
            timeout=10,
            what="the stream to be counted",
        )
        # Each created file is one event carrying its 16 KiB of metadata; 90 a batch.
        metadata = json.dumps({"pad": "x" * 16000})
        files = [("file", (f"f{i}.txt", b"x", "text/plain")) for i in range(90)]
        with server.client(editor.token, timeout=60) as client:
            for _batch in range(20):
                created = client.post(
                    "/api/v1/files/batch", files=files, data={"metadata": metadata}
                )
                assert created.status_code == 201, created.text
                if value(scrape(server), "filesvc_event_streams_active") == streams_before:
                    break
        wait_for(
            lambda: value(scrape(server), "filesvc_event_streams_active") == streams_before,
            timeout=CUT_DEADLINE,
            what="the stalled stream to be dropped",
        )
        closed_by_server(sock, within=CUT_DEADLINE)
    server.assert_serving()


def test_a_download_whose_client_stops_reading_is_dropped(
    server: RunningServer, editor: User
) -> None:
    data = os.urandom(32 * MiB)
    with server.client(editor.token, timeout=60) as client:
        created = client.put("/api/v1/files/raw/stalled-download.bin", content=data)
    assert created.status_code == 201, created.text
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(CUT_DEADLINE)
    sock.connect((server.host, server.port))
    with sock:
        auth = [("Authorization", f"Bearer {editor.token}")]
        sock.sendall(request_head("GET", created.json()["content_url"], auth))
        assert read_response(sock, to_head=True).status == 200
        # Being sent, then stuck on a client that reads nothing, then dropped.
        wait_for(
            lambda: value(scrape(server), "filesvc_transfers_active", direction="download") == 1,
            timeout=10,
            what="the download to be counted",
        )
        wait_for(
            lambda: value(scrape(server), "filesvc_transfers_active", direction="download") == 0,
            timeout=CUT_DEADLINE,
            what="the stalled download to be dropped",
        )
        closed_by_server(sock, within=CUT_DEADLINE)
    server.assert_serving()
