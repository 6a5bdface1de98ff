"""A server killed mid-upload loses no committed file and shows nothing half-written."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
from pathlib import Path

import pytest

from .server import MiB, blob_files, run_server, tmp_files, wait_for
from .wire import connect, junk, request_head

pytestmark = pytest.mark.e2e


def test_sigkill_mid_upload_keeps_committed_files(tmp_path: Path) -> None:
    env = {"FILESVC_ADMIN_PASSWORD": secrets.token_urlsafe(24)}
    committed = os.urandom(5 * MiB)

    with run_server(tmp_path, env) as server:
        with server.client() as client:
            created = client.put("/api/v1/files/raw/kept.bin", content=committed)
        assert created.status_code == 201, created.text
        kept_id = created.json()["id"]
        blobs_before = blob_files(server)

        sock = connect(server)
        try:
            head = request_head(
                "PUT",
                "/api/v1/files/raw/cut.bin",
                [
                    ("Authorization", f"Bearer {server.admin_token}"),
                    ("Content-Length", str(50 * MiB)),
                ],
            )
            sock.sendall(head)
            for chunk in junk(10 * MiB):
                sock.sendall(chunk)
            wait_for(lambda: bool(tmp_files(server)), timeout=10, what="the upload's temp file")
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
        finally:
            sock.close()
        # Only the temp file is new: nothing reached the place where committed blobs live.
        assert blob_files(server) - blobs_before == tmp_files(server)

    with run_server(tmp_path, env) as restarted:
        assert restarted.file_ids() == {kept_id}
        with restarted.client() as client:
            download = client.get(f"/api/v1/files/{kept_id}/content")
            assert download.status_code == 200
            assert hashlib.sha256(download.content).hexdigest() == created.json()["sha256"]
            again = client.put("/api/v1/files/raw/after.bin", content=b"after the crash")
            assert again.status_code == 201
