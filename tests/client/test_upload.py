"""The uploader's policy against an in-memory tus server (httpx.MockTransport): retries
after a lost connection or a damaged chunk go on from the server's offset, and an upload
the server forgot is started over. The real server is in tests/e2e/test_cli_e2e.py."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from filesvc.client.config import Target
from filesvc.client.errors import ClientError
from filesvc.client.progress import PlainDisplay
from filesvc.client.state import ResumeState, UploadKey
from filesvc.client.upload import Uploader, UploadOptions

from .conftest import ClientDirs

SERVER = "http://files.test"
KiB = 1024
Fault = Callable[[httpx.Request], httpx.Response]


@dataclass
class Upload:
    length: int
    data: bytearray = field(default_factory=bytearray)


@dataclass
class MemoryTus:
    """Enough of a tus server: creation, HEAD, PATCH with sha256 checksums, and the file."""

    uploads: dict[str, Upload] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)  # for the next PATCH requests
    patches: list[tuple[int, int]] = field(default_factory=list)  # (offset, length) received
    keep_at_most: int | None = None  # a server that holds back part of each chunk

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path == "/api/v1/uploads":
            upload_id = uuid.uuid4().hex
            self.uploads[upload_id] = Upload(int(request.headers["upload-length"]))
            return httpx.Response(201, headers={"Location": f"/api/v1/uploads/{upload_id}"})
        if path.startswith("/api/v1/files/"):
            data = self.files[path.rsplit("/", 1)[1]]
            return httpx.Response(200, json={"sha256": hashlib.sha256(data).hexdigest()})
        upload = self.uploads.get(path.rsplit("/", 1)[1])
        if upload is None:
            return httpx.Response(404, json={"detail": "no such upload", "code": "not_found"})
        if request.method == "HEAD":
            headers = {"Upload-Offset": str(len(upload.data)), "Upload-Length": str(upload.length)}
            return httpx.Response(200, headers=headers)
        assert request.method == "PATCH"
        if self.faults:
            return self.faults.pop(0)(request)
        offset, body = int(request.headers["upload-offset"]), request.content
        self.patches.append((offset, len(body)))
        if offset != len(upload.data):
            return httpx.Response(409, json={"detail": "wrong offset", "code": "conflict"})
        algorithm, _, checksum = request.headers["upload-checksum"].partition(" ")
        assert algorithm == "sha256"
        if base64.b64decode(checksum) != hashlib.sha256(body).digest():
            return httpx.Response(460, json={"detail": "checksum", "code": "checksum_mismatch"})
        kept = body if self.keep_at_most is None else body[: self.keep_at_most]
        upload.data += kept
        headers = {"Upload-Offset": str(len(upload.data))}
        if len(upload.data) == upload.length:
            file_id = uuid.uuid4().hex
            self.files[file_id] = bytes(upload.data)
            headers |= {"X-File-Id": file_id, "X-File-Location": f"/api/v1/files/{file_id}"}
        return httpx.Response(204, headers=headers)


def cut_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.WriteError("connection reset by peer", request=request)


def damaged(request: httpx.Request) -> httpx.Response:
    return httpx.Response(460, json={"detail": "checksum mismatch", "code": "checksum_mismatch"})


def refused(request: httpx.Request) -> httpx.Response:
    return httpx.Response(413, json={"detail": "over the quota", "code": "quota_exceeded"})


@dataclass
class Harness:
    server: MemoryTus
    uploader: Uploader
    output: io.StringIO
    pauses: list[float]


@pytest.fixture
def harness(client_dirs: ClientDirs) -> Harness:
    server = MemoryTus()
    client = httpx.Client(base_url=SERVER + "/api/v1", transport=httpx.MockTransport(server))
    output = io.StringIO()
    pauses: list[float] = []
    uploader = Uploader(
        client,
        Target(SERVER, "token"),
        ResumeState(),
        PlainDisplay(output),
        UploadOptions(chunk_bytes=64 * KiB),
        sleep=pauses.append,
    )
    return Harness(server, uploader, output, pauses)


def random_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def test_chunks_follow_one_another_and_the_hash_is_checked(
    harness: Harness, tmp_path: Path
) -> None:
    data = random_file(tmp_path / "a.bin", 200 * KiB)
    uploaded = harness.uploader.upload(tmp_path / "a.bin")
    assert harness.server.files[uploaded.file_id] == data
    assert harness.server.patches == [(0, 65536), (65536, 65536), (131072, 65536), (196608, 8192)]
    assert uploaded.sent == len(data)
    assert ResumeState().upload_url(UploadKey.of(SERVER, tmp_path / "a.bin")) is None


@pytest.mark.parametrize("fault", [cut_connection, damaged], ids=["connection cut", "460"])
def test_a_failed_chunk_is_sent_again_from_the_servers_offset(
    harness: Harness, tmp_path: Path, fault: Fault
) -> None:
    data = random_file(tmp_path / "a.bin", 150 * KiB)
    harness.server.faults = [fault, fault]
    uploaded = harness.uploader.upload(tmp_path / "a.bin")
    assert harness.server.files[uploaded.file_id] == data
    assert harness.pauses == [1, 2]
    assert harness.server.patches[0] == (0, 65536)
    assert "trying again in 1 s" in harness.output.getvalue()


def test_a_server_that_keeps_less_than_it_got_is_sent_the_rest(
    harness: Harness, tmp_path: Path
) -> None:
    data = random_file(tmp_path / "a.bin", 100 * KiB)
    harness.server.keep_at_most = 40 * KiB
    uploaded = harness.uploader.upload(tmp_path / "a.bin")
    assert harness.server.files[uploaded.file_id] == data
    assert [offset for offset, _ in harness.server.patches] == [0, 40960, 81920]


def test_it_gives_up_after_six_failures_in_a_row(harness: Harness, tmp_path: Path) -> None:
    random_file(tmp_path / "a.bin", 100 * KiB)
    harness.server.faults = [cut_connection] * 6
    with pytest.raises(ClientError, match="gave up after 6 attempts") as raised:
        harness.uploader.upload(tmp_path / "a.bin")
    assert "connection reset by peer" in raised.value.message
    assert harness.pauses == [1, 2, 4, 8, 16]
    # What was stored stays resumable by the next run.
    assert ResumeState().upload_url(UploadKey.of(SERVER, tmp_path / "a.bin")) is not None


def test_a_refused_file_is_a_clear_error_of_that_file_alone(
    harness: Harness, tmp_path: Path
) -> None:
    random_file(tmp_path / "a.bin", 10 * KiB)
    harness.server.faults = [refused]
    with pytest.raises(ClientError) as raised:
        harness.uploader.upload(tmp_path / "a.bin")
    assert raised.value.message.endswith("the server answered 413: over the quota (quota_exceeded)")
    assert not raised.value.fatal


def test_the_next_run_resumes_and_a_forgotten_upload_starts_over(
    harness: Harness, tmp_path: Path
) -> None:
    data = random_file(tmp_path / "a.bin", 100 * KiB)
    harness.server.faults = [cut_connection] * 6
    with pytest.raises(ClientError):
        harness.uploader.upload(tmp_path / "a.bin")
    # The server expires it meanwhile: the next run starts a new upload, once.
    harness.server.uploads.clear()
    uploaded = harness.uploader.upload(tmp_path / "a.bin")
    assert harness.server.files[uploaded.file_id] == data
    assert "the server no longer has the upload; starting over" not in harness.output.getvalue()
    assert len(harness.server.uploads) == 1


def test_an_upload_gone_midway_is_started_over(harness: Harness, tmp_path: Path) -> None:
    data = random_file(tmp_path / "a.bin", 100 * KiB)

    def expire(request: httpx.Request) -> httpx.Response:
        harness.server.uploads.clear()
        return httpx.Response(404, json={"detail": "gone", "code": "not_found"})

    harness.server.faults = [expire]
    uploaded = harness.uploader.upload(tmp_path / "a.bin")
    assert harness.server.files[uploaded.file_id] == data
    assert "the server no longer has the upload; starting over" in harness.output.getvalue()
