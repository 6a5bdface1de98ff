"""Uploads and downloads the way people type them: `curl -F`, `curl -T`, `curl -r`,
against a server on local disk and one on S3 (SeaweedFS)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from .conftest import on_both_stacks
from .server import (
    S3_PART_BYTES,
    LocalFile,
    MiB,
    RunningServer,
    User,
    assert_nothing_kept,
    make_random_file,
    new_blob,
    sha256_of,
    snapshot,
    tmp_files,
)
from .wire import run_curl

pytestmark = pytest.mark.e2e


server_process = on_both_stacks()


def bearer(user: User) -> str:
    return f"Authorization: Bearer {user.token}"


def assert_stored(server: RunningServer, file: dict[str, object], blob: Path) -> None:
    """The row the API shows and the blob on disk both match the upload's answer."""
    row = server.get_file(str(file["id"]))
    for key in ("id", "name", "size", "sha256", "content_type", "owner_id", "content_url"):
        assert row[key] == file[key], key
    assert file["id"] in server.file_ids()
    assert blob.stat().st_size == file["size"]
    assert sha256_of(blob) == file["sha256"]
    assert not tmp_files(server)


def test_multipart_upload_of_100_mib_downloads_whole_and_in_ranges(
    server: RunningServer, editor: User, big_file: LocalFile, curl: str, tmp_path: Path
) -> None:
    before = snapshot(server)

    upload = run_curl(
        curl, tmp_path, "-H", bearer(editor), "-F", f"file=@{big_file.path}",
        server.url("/api/v1/files"),
    )  # fmt: skip

    assert upload.returncode == 0, upload.stderr
    assert upload.status == 201, upload.body[:2000]
    file = upload.json()
    assert file["name"] == "big.bin"
    assert file["size"] == big_file.size
    assert file["sha256"] == big_file.sha256
    assert file["owner_id"] == editor.id
    assert file["visibility"] == "private"
    assert upload.header("location") == f"/api/v1/files/{file['id']}"
    assert file["content_url"] == f"/api/v1/files/{file['id']}/content"
    assert_stored(server, file, new_blob(server, before))

    downloaded = tmp_path / "downloaded.bin"
    download = run_curl(
        curl, tmp_path, "-H", bearer(editor), server.url(file["content_url"]), output=downloaded
    )
    assert download.returncode == 0, download.stderr
    assert download.status == 200
    assert sha256_of(downloaded) == big_file.sha256
    downloaded.unlink()  # pytest keeps the last runs' temp dirs; 100 MiB each is too much
    etag = f'"{big_file.sha256}"'
    assert download.header("etag") == etag
    assert download.header("content-length") == str(big_file.size)
    assert download.header("accept-ranges") == "bytes"
    assert download.header("x-content-type-options") == "nosniff"
    disposition = download.header("content-disposition")
    assert disposition is not None
    assert disposition.startswith("attachment;")
    assert 'filename="big.bin"' in disposition

    with big_file.path.open("rb") as f:
        head = f.read(100)
        f.seek(-100, 2)
        tail = f.read()
    size = big_file.size
    for range_header, expected, content_range in [
        ("bytes=0-99", head, f"bytes 0-99/{size}"),
        ("bytes=-100", tail, f"bytes {size - 100}-{size - 1}/{size}"),
    ]:
        part = run_curl(
            curl, tmp_path, "-H", bearer(editor), "-H", f"Range: {range_header}",
            server.url(file["content_url"]),
        )  # fmt: skip
        assert part.status == 206, range_header
        assert part.body == expected, range_header
        assert part.header("content-range") == content_range
        assert part.header("content-length") == "100"
        assert part.header("etag") == etag

    head_only = run_curl(
        curl, tmp_path, "-I", "-H", bearer(editor), server.url(file["content_url"])
    )
    assert head_only.status == 200
    assert head_only.header("content-length") == str(big_file.size)
    assert head_only.header("etag") == etag

    cached = run_curl(
        curl, tmp_path, "-H", bearer(editor), "-H", f"If-None-Match: {etag}",
        server.url(file["content_url"]),
    )  # fmt: skip
    assert cached.status == 304
    assert cached.body == b""
    assert cached.header("etag") == etag


def test_raw_put_with_curl_upload_file_takes_the_name_curl_appends(
    server: RunningServer, editor: User, big_file: LocalFile, curl: str, tmp_path: Path
) -> None:
    before = snapshot(server)

    upload = run_curl(
        curl, tmp_path, "-H", bearer(editor), "-T", str(big_file.path),
        server.url("/api/v1/files/raw/"),
    )  # fmt: skip

    assert upload.returncode == 0, upload.stderr
    assert upload.status == 201, upload.body[:2000]
    file = upload.json()
    assert file["name"] == "big.bin"
    assert file["size"] == big_file.size
    assert file["sha256"] == big_file.sha256
    assert upload.header("location") == f"/api/v1/files/{file['id']}"
    assert_stored(server, file, new_blob(server, before))


def test_raw_put_of_a_chunked_body_from_stdin(
    server: RunningServer, editor: User, big_file: LocalFile, curl: str, tmp_path: Path
) -> None:
    before = snapshot(server)

    upload = run_curl(
        curl, tmp_path, "-v", "-H", bearer(editor), "-T", "-",
        server.url("/api/v1/files/raw/stdin.bin"),
        stdin=big_file.path,
    )  # fmt: skip

    # What this test is about: no Content-Length, the body comes in chunks.
    assert "> transfer-encoding: chunked" in upload.stderr.lower()
    assert upload.returncode == 0, upload.stderr
    assert upload.status == 201, upload.body[:2000]
    file = upload.json()
    assert file["name"] == "stdin.bin"
    assert file["size"] == big_file.size
    assert file["sha256"] == big_file.sha256
    assert_stored(server, file, new_blob(server, before))


@pytest.mark.parametrize("mode", ["multipart-x-checksum", "raw-content-digest"])
def test_a_wrong_checksum_is_rejected_and_nothing_is_kept(
    server: RunningServer, editor: User, curl: str, tmp_path: Path, mode: str
) -> None:
    # A few MiB, so the server has written several batches before it can compare.
    small = make_random_file(tmp_path / "small.bin", 3 * MiB + 123)
    wrong = hashlib.sha256(b"some other bytes").digest()

    def upload(digest: bytes) -> tuple[int, dict[str, object]]:
        if mode == "multipart-x-checksum":
            args = ["-H", f"X-Checksum-SHA256: {digest.hex()}", "-F", f"file=@{small.path}"]
            url = server.url("/api/v1/files")
        else:
            encoded = base64.b64encode(digest).decode()
            args = ["-H", f"Content-Digest: sha-256=:{encoded}:", "-T", str(small.path)]
            url = server.url("/api/v1/files/raw/")
        result = run_curl(curl, tmp_path, "-H", bearer(editor), *args, url)
        assert result.returncode == 0, result.stderr
        assert result.header("content-type") == "application/json"
        return result.status, result.json()

    before = snapshot(server)
    status, body = upload(wrong)
    assert status == 400, body
    assert body["code"] == "checksum_mismatch"
    assert_nothing_kept(server, before)

    # The same upload with the right digest goes through: the header really was checked.
    status, body = upload(bytes.fromhex(small.sha256))
    assert status == 201, body
    assert body["sha256"] == small.sha256


@pytest.mark.parametrize(
    "size",
    [0, 1, S3_PART_BYTES - 1, S3_PART_BYTES, S3_PART_BYTES + 1, 129 * MiB],
    ids=["0B", "1B", "5MiB-1", "5MiB", "5MiB+1", "129MiB"],
)
def test_sizes_at_the_boundaries_round_trip_with_hashes(
    server: RunningServer, editor: User, curl: str, tmp_path: Path, size: int
) -> None:
    sent = make_random_file(tmp_path / "sent.bin", size)
    before = snapshot(server)

    upload = run_curl(
        curl, tmp_path, "-H", bearer(editor), "-T", str(sent.path),
        server.url("/api/v1/files/raw/"),
    )  # fmt: skip

    assert upload.returncode == 0, upload.stderr
    assert upload.status == 201, upload.body[:2000]
    file = upload.json()
    assert file["size"] == size
    assert file["sha256"] == sent.sha256
    assert_stored(server, file, new_blob(server, before))
    received = tmp_path / "received.bin"
    download = run_curl(
        curl, tmp_path, "-H", bearer(editor), server.url(file["content_url"]), output=received
    )
    assert download.returncode == 0, download.stderr
    assert download.status == 200
    assert download.header("content-length") == str(size)
    assert sha256_of(received) == sent.sha256
    sent.path.unlink()
    received.unlink()
