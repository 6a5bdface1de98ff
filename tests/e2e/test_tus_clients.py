"""tus with real clients against a real server, on local disk and on S3: tuspy and
tus-js-client upload 100 MiB in 5 MiB chunks; a PATCH cut off mid-body and a server
killed with SIGKILL between chunks are both resumed from HEAD's offset."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tusclient.client import TusClient

from tests.conftest import new_postgres_database
from tests.seaweedfs import SeaweedFS

from .conftest import on_both_stacks
from .npm import TUS_JS_CLIENT, node_binary, npm_package
from .server import (
    LocalFile,
    MiB,
    RunningServer,
    S3Target,
    User,
    make_random_file,
    new_blob,
    run_server,
    sha256_of,
    snapshot,
    wait_for,
)
from .watch import Watcher
from .wire import PartialSender, connect, request_head, reset_close

pytestmark = pytest.mark.e2e

server_process = on_both_stacks()
CHUNK = 5 * MiB
TUS = {"Tus-Resumable": "1.0.0"}
NODE_SCRIPT = Path(__file__).with_name("tus_node_upload.cjs")


def _uploads_url(server: RunningServer) -> str:
    return server.url("/api/v1/uploads")


def _check_stored(server: RunningServer, before: object, file_id: str, expected: LocalFile) -> None:
    file = server.get_file(file_id)
    assert file["size"] == expected.size
    assert file["sha256"] == expected.sha256
    assert sha256_of(new_blob(server, before)) == expected.sha256  # type: ignore[arg-type]


def test_tuspy_uploads_100_mib_in_5_mib_chunks(
    server: RunningServer, editor: User, big_file: LocalFile
) -> None:
    before = snapshot(server)
    client = TusClient(_uploads_url(server), headers={"Authorization": f"Bearer {editor.token}"})
    # Our own stream: tuspy leaves the files it opens for a path to the garbage collector.
    with big_file.path.open("rb") as stream:
        uploader = client.uploader(
            file_stream=stream,
            chunk_size=CHUNK,
            metadata={"filename": "big.bin", "filetype": "application/octet-stream"},
        )
        uploader.upload()
    assert uploader.offset == big_file.size
    assert uploader.request is not None
    file_id = uploader.request.response_headers["x-file-id"]
    _check_stored(server, before, file_id, big_file)
    assert server.get_file(file_id)["name"] == "big.bin"


def test_tus_js_client_on_node_uploads_100_mib_in_5_mib_chunks(
    server: RunningServer, editor: User, big_file: LocalFile
) -> None:
    package = npm_package(*TUS_JS_CLIENT)
    before = snapshot(server)
    result = subprocess.run(
        [node_binary(), str(NODE_SCRIPT), _uploads_url(server), editor.token, str(big_file.path),
         str(CHUNK)],
        env={**os.environ, "NODE_PATH": str(package.parent)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["progress"][-1] == big_file.size
    assert len(answer["progress"]) == big_file.size // CHUNK
    _check_stored(server, before, answer["fileId"], big_file)
    assert server.get_file(answer["fileId"])["name"] == "from-node.bin"


def _head_offset(server: RunningServer, url: str, token: str) -> int:
    response = httpx.head(url, headers={"Authorization": f"Bearer {token}", **TUS}, timeout=10)
    assert response.status_code == 200, response.status_code
    return int(response.headers["upload-offset"])


def test_patch_cut_mid_body_resumes_from_head_offset(
    server: RunningServer, editor: User, tmp_path: Path
) -> None:
    local = make_random_file(tmp_path / "cut.bin", 24 * MiB)
    data = local.path.read_bytes()
    before = snapshot(server)
    with server.client(editor.token) as client:
        created = client.post("/api/v1/uploads", headers={**TUS, "Upload-Length": str(local.size)})
    assert created.status_code == 201, created.text
    url = server.url(created.headers["location"])

    sock = connect(server)
    try:
        sock.sendall(
            request_head(
                "PATCH",
                created.headers["location"],
                [
                    ("Authorization", f"Bearer {editor.token}"),
                    ("Tus-Resumable", "1.0.0"),
                    ("Content-Type", "application/offset+octet-stream"),
                    ("Upload-Offset", "0"),
                    ("Content-Length", str(local.size)),
                ],
            )
        )
        sock.sendall(data[: 13 * MiB])
    finally:
        reset_close(sock)
    # The server keeps what reached it (durably) and frees the upload for the next PATCH.
    wait_for(
        lambda: _head_offset(server, url, editor.token) > 0,
        timeout=20,
        what="the cut PATCH's bytes to be committed",
    )
    offset = _head_offset(server, url, editor.token)
    assert 0 < offset <= 13 * MiB
    with server.client(editor.token) as client:
        resumed = client.patch(
            created.headers["location"],
            content=data[offset:],
            headers={
                **TUS,
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": str(offset),
            },
        )
    assert resumed.status_code == 204, resumed.text
    _check_stored(server, before, resumed.headers["x-file-id"], local)


@pytest.fixture(params=["local", "s3"])
def killable_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """A server's environment of its own (not the module server's database or bucket)."""
    env = {"FILESVC_ADMIN_PASSWORD": secrets.token_urlsafe(24)}
    if request.param == "local":
        yield env
        return
    seaweedfs: SeaweedFS = request.getfixturevalue("seaweedfs")
    bucket = seaweedfs.create_bucket()
    try:
        with new_postgres_database("filesvc_e2e") as database_url:
            target = S3Target(seaweedfs.endpoint_url, bucket)
            yield env | target.env() | {"FILESVC_DATABASE_URL": database_url}
    finally:
        seaweedfs.release_bucket(bucket)


def test_sigkill_between_chunks_then_resume(
    killable_env: dict[str, str], tmp_path: Path, big_file: LocalFile
) -> None:
    headers = {}
    with run_server(tmp_path, killable_env) as server:
        headers = server.auth()
        before = snapshot(server)
        client = TusClient(_uploads_url(server), headers=headers)
        with big_file.path.open("rb") as stream:
            uploader = client.uploader(file_stream=stream, chunk_size=CHUNK)
            uploader.upload(stop_at=8 * CHUNK)  # eight chunks, then the server dies
        url = uploader.url
        assert url is not None
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)

    with run_server(tmp_path, killable_env) as restarted:
        offset = _head_offset(restarted, url.replace(server.base_url, restarted.base_url),
                              restarted.admin_token)  # fmt: skip
        assert offset == 8 * CHUNK
        client = TusClient(_uploads_url(restarted), headers=restarted.auth())
        with big_file.path.open("rb") as stream:
            uploader = client.uploader(
                file_stream=stream,
                chunk_size=CHUNK,
                url=url.replace(server.base_url, restarted.base_url),
            )
            assert uploader.offset == 8 * CHUNK
            uploader.upload()
        assert uploader.request is not None
        file_id = uploader.request.response_headers["x-file-id"]
        _check_stored(restarted, before, file_id, big_file)


def _patch(
    server: RunningServer, token: str, location: str, offset: int, data: bytes
) -> httpx.Response:
    with server.client(token) as client:
        return client.patch(
            location,
            content=data,
            headers={
                **TUS,
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": str(offset),
            },
        )


def _create(server: RunningServer, token: str, length: int) -> str:
    with server.client(token) as client:
        created = client.post("/api/v1/uploads", headers={**TUS, "Upload-Length": str(length)})
    assert created.status_code == 201, created.text
    location: str = created.headers["location"]
    return location


def test_two_patches_at_once_one_gets_423(server: RunningServer, editor: User) -> None:
    data = os.urandom(16 * MiB)
    location = _create(server, editor.token, len(data))
    head = request_head(
        "PATCH",
        location,
        [
            ("Authorization", f"Bearer {editor.token}"),
            ("Tus-Resumable", "1.0.0"),
            ("Content-Type", "application/offset+octet-stream"),
            ("Upload-Offset", "0"),
            ("Content-Length", str(len(data))),
        ],
    )
    pieces = [data[i : i + MiB] for i in range(0, len(data), MiB)]
    sock = connect(server)
    with PartialSender(sock, head, pieces, stop_after=6 * MiB) as slow:
        # An empty PATCH at offset 0 is harmless if it wins; it must lose once the slow one
        # holds the upload.
        wait_for(
            lambda: _patch(server, editor.token, location, 0, b"").status_code == 423,
            timeout=20,
            what="a second PATCH to be refused while the first is writing",
        )
        refused = _patch(server, editor.token, location, 0, data[:MiB])
        assert refused.status_code == 423
        assert refused.json()["code"] == "upload_locked"
        assert slow.error is None
    reset_close(sock)
    url = server.url(location)
    wait_for(
        lambda: _head_offset(server, url, editor.token) > 0,
        timeout=20,
        what="the cut PATCH to commit what it received",
    )
    offset = _head_offset(server, url, editor.token)
    done = _patch(server, editor.token, location, offset, data[offset:])
    assert done.status_code == 204, done.text
    file = server.get_file(done.headers["x-file-id"])
    assert file["sha256"] == hashlib.sha256(data).hexdigest()


def test_progress_of_an_upload_over_sse(server: RunningServer, editor: User) -> None:
    data = os.urandom(12 * MiB)
    location = _create(server, editor.token, len(data))
    upload_id = location.rsplit("/", 1)[1]
    watcher = Watcher(server.url(f"/api/v1/transfers/{upload_id}/events"), editor.token).start()
    first = _patch(server, editor.token, location, 0, data[: 6 * MiB])
    assert first.status_code == 204
    assert first.headers["x-transfer-id"] == upload_id
    last = _patch(server, editor.token, location, 6 * MiB, data[6 * MiB :])
    assert last.status_code == 204
    events = watcher.join()
    progress = [e.data for e in events if e.event == "progress"]
    counts = [p["bytes"] for p in progress]
    assert counts == sorted(counts)
    assert counts[-1] == len(data)
    assert all(p["total"] == len(data) for p in progress if p["state"] == "receiving")
    assert any(0 < c < len(data) for c in counts), counts
    final = events[-1]
    assert final.event == "complete"
    body = final.data
    assert body["file"]["id"] == last.headers["x-file-id"]
    assert body["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["bytes"] == len(data)
