"""The S3 store failing under a real server: SeaweedFS killed in the middle of a multipart
upload and of a download, and a bucket that does not exist at start.

These tests kill and restart a SeaweedFS of their own, never the session's."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.seaweedfs import SeaweedFS, weed_binary

from .server import (
    MiB,
    RunningServer,
    S3Target,
    blob_files,
    run_server,
    snapshot,
    wait_for,
)
from .wire import PartialSender, connect, read_early_response, request_head

pytestmark = pytest.mark.e2e

# Fail fast while the store is down: two attempts per call (one retry), short timeouts.
FAST_FAILING = {
    "FILESVC_S3_MAX_ATTEMPTS": "2",
    "FILESVC_S3_CONNECT_TIMEOUT_SECONDS": "2",
    "FILESVC_S3_READ_TIMEOUT_SECONDS": "10",
}


@pytest.fixture(scope="module")
def own_seaweedfs(
    seaweedfs: SeaweedFS, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SeaweedFS]:
    # Asks for the session's instance only for its credentials in the environment.
    binary = weed_binary()
    assert binary is not None
    store = SeaweedFS(binary, tmp_path_factory.mktemp("own-seaweedfs"))
    store.start()
    yield store
    store.stop()


@pytest.fixture(scope="module")
def s3_server(
    own_seaweedfs: SeaweedFS, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    bucket = own_seaweedfs.create_bucket()
    env = S3Target(own_seaweedfs.endpoint_url, bucket).env() | FAST_FAILING
    with run_server(tmp_path_factory.mktemp("s3-faults"), env) as server:
        yield server


def ensure_running(store: SeaweedFS) -> None:
    if store.process is None:
        store.start()


def test_store_killed_mid_multipart_upload_leaves_no_row_object_or_parts(
    s3_server: RunningServer, own_seaweedfs: SeaweedFS
) -> None:
    ensure_running(own_seaweedfs)
    before = snapshot(s3_server)
    killed = threading.Event()
    total = 200 * MiB

    def body() -> Iterator[bytes]:
        chunk = os.urandom(MiB)
        for sent in range(0, total, MiB):
            if sent == 20 * MiB:  # several parts are in the store by now
                own_seaweedfs.stop()
                killed.set()
            yield chunk

    head = request_head(
        "PUT",
        "/api/v1/files/raw/cut.bin",
        [("Authorization", f"Bearer {s3_server.admin_token}"), ("Content-Length", str(total))],
    )
    # A raw socket, so the answer is read even after the server stopped reading the body:
    # the sender stops at half the body, the server must answer before it has the rest.
    with connect(s3_server, timeout=60.0) as sock, PartialSender(sock, head, body(), total // 2):
        response = read_early_response(sock)
    assert killed.is_set()
    assert response.status == 503, response.body[:2000]
    assert response.json()["code"] == "storage_unavailable"
    assert int(response.header("retry-after") or 0) > 0
    assert s3_server.file_ids() == before.rows  # no row
    s3_server.new_tracebacks()  # a storage error mid-upload may be logged with one

    own_seaweedfs.start()
    # The server keeps retrying the abort it could not make while the store was down.
    wait_for(
        lambda: blob_files(s3_server) == before.blobs,
        timeout=90,
        interval=0.5,
        what="the pending multipart upload to be aborted after the restart",
    )
    s3_server.assert_serving()
    with s3_server.client() as client:
        again = client.put("/api/v1/files/raw/after.bin", content=os.urandom(6 * MiB))
    assert again.status_code == 201, again.text


def test_store_killed_mid_download_cuts_the_connection(
    s3_server: RunningServer, own_seaweedfs: SeaweedFS
) -> None:
    ensure_running(own_seaweedfs)
    size = 64 * MiB
    with s3_server.client() as client:
        created = client.put("/api/v1/files/raw/download.bin", content=os.urandom(size))
    assert created.status_code == 201, created.text
    request_id = "e2e-cut-" + secrets.token_hex(6)
    head = request_head(
        "GET",
        created.json()["content_url"],
        [("Authorization", f"Bearer {s3_server.admin_token}"), ("X-Request-ID", request_id)],
    )

    sock = connect(s3_server)
    received = b""
    try:
        sock.sendall(head)
        while len(received) < MiB:
            chunk = sock.recv(256 * 1024)
            assert chunk, "the server closed the download early"
            received += chunk
        own_seaweedfs.stop()
        sock.settimeout(30)
        while chunk := sock.recv(1024 * 1024):
            received += chunk
    finally:
        sock.close()

    header, _, body = received.partition(b"\r\n\r\n")
    assert header.startswith(b"HTTP/1.1 200"), header[:200]
    assert f"content-length: {size}".encode() in header.lower()
    assert len(body) < size, "the body must be cut short, not look complete"
    wait_for(
        lambda: "cut off" in s3_server.stderr_path.read_text(errors="replace"),
        timeout=10,
        what="the cut-off download to be logged",
    )
    log = s3_server.stderr_path.read_text(errors="replace")
    [line] = [line for line in log.splitlines() if "cut off" in line and request_id in line]
    assert "download of" in line
    s3_server.new_tracebacks()  # the server raises out of the body to drop the connection
    s3_server.assert_serving()


def test_a_missing_bucket_stops_the_start_with_a_clear_message(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILESVC_")}
    env |= S3Target(seaweedfs.endpoint_url, "no-such-bucket-at-all").env()
    env |= {"FILESVC_DATA_DIR": str(tmp_path / "data"), "FILESVC_ADMIN_PASSWORD": "x" * 16}
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-m", "filesvc", "serve", "--port", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    stderr = process.stderr.decode(errors="replace")
    assert process.returncode != 0
    assert "S3 bucket 'no-such-bucket-at-all' does not exist at http://127.0.0.1:" in stderr
    assert time.monotonic() - started < 30
