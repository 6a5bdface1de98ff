"""A client that goes away mid-upload leaves no row, no blob and no temp file behind, on
local disk and on S3 (where a write in progress is a pending multipart upload)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from .conftest import on_both_stacks
from .server import MiB, RunningServer, User, assert_nothing_kept, snapshot, tmp_files, wait_for
from .wire import chunked, connect, junk, multipart_content_type, request_head, reset_close

pytestmark = pytest.mark.e2e

DECLARED_BYTES = 50 * MiB
SENT_BYTES = 10 * MiB
BOUNDARY = b"e2e-cut-boundary"


server_process = on_both_stacks()


def tmp_bytes(server: RunningServer) -> int:
    if server.s3 is not None:
        # S3 lists pending multipart uploads, not their sizes: one means bytes are stored.
        return len(tmp_files(server))
    total = 0
    for relative in tmp_files(server):
        try:
            total += (server.blobs_dir / relative).stat().st_size
        except FileNotFoundError:
            continue  # removed while we looked
    return total


def cut_request(server: RunningServer, user: User, kind: str) -> tuple[bytes, Iterator[bytes]]:
    """The head and the first SENT_BYTES of a body that promises DECLARED_BYTES."""
    auth = ("Authorization", f"Bearer {user.token}")
    if kind == "raw":
        headers = [auth, ("Content-Length", str(DECLARED_BYTES))]
        return request_head("PUT", "/api/v1/files/raw/x.bin", headers), junk(SENT_BYTES)
    if kind == "raw-chunked":
        headers = [auth, ("Transfer-Encoding", "chunked")]
        body = chunked(junk(SENT_BYTES), end=False)
        return request_head("PUT", "/api/v1/files/raw/x.bin", headers), body
    assert kind == "multipart"
    headers = [
        auth,
        ("Content-Type", multipart_content_type(BOUNDARY)),
        ("Content-Length", str(DECLARED_BYTES)),
    ]
    file_part_head = (
        b"--" + BOUNDARY + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="x.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    return request_head("POST", "/api/v1/files", headers) + file_part_head, junk(SENT_BYTES)


@pytest.mark.parametrize("close", ["reset", "fin"])
@pytest.mark.parametrize("kind", ["raw", "raw-chunked", "multipart"])
def test_an_upload_cut_halfway_leaves_nothing(
    server: RunningServer, editor: User, kind: str, close: str
) -> None:
    before = snapshot(server)
    head, body = cut_request(server, editor, kind)

    sock = connect(server)
    try:
        sock.sendall(head)
        for chunk in body:
            sock.sendall(chunk)
        # Cut only once the server is provably mid-upload: its temp file holds bytes.
        wait_for(lambda: tmp_bytes(server) > 0, timeout=10, what="the upload's temp file")
    finally:
        if close == "reset":
            reset_close(sock)  # RST, like a killed client or a dropped network
        else:
            sock.close()  # FIN, like a client that just stops

    wait_for(lambda: not tmp_files(server), timeout=10, what="the temp file to be removed")
    assert_nothing_kept(server, before)
    server.assert_serving()


@pytest.mark.parametrize("close", ["reset", "fin"])
def test_a_download_cut_halfway_is_harmless(
    server: RunningServer, editor: User, close: str
) -> None:
    data = os.urandom(32 * MiB)
    with server.client(editor.token) as client:
        created = client.put("/api/v1/files/raw/download.bin", content=data)
    assert created.status_code == 201, created.text
    request_id = "e2e-" + secrets.token_hex(8)
    head = request_head(
        "GET",
        created.json()["content_url"],
        [("Authorization", f"Bearer {editor.token}"), ("X-Request-ID", request_id)],
    )

    sock = connect(server)
    try:
        sock.sendall(head)
        received = 0
        while received < 1 * MiB:
            chunk = sock.recv(256 * 1024)
            assert chunk, "the server closed the download early"
            received += len(chunk)
    finally:
        if close == "reset":
            reset_close(sock)
        else:
            sock.close()

    # The access line comes once the server has given up on the response; any traceback
    # it logged on the way is then in the log for the fixture to find.
    wait_for(
        lambda: f"id={request_id}" in server.stderr_path.read_text(errors="replace"),
        timeout=10,
        what="the download's access log line",
    )
    server.assert_serving()
    assert server.get_file(created.json()["id"])["size"] == len(data)
