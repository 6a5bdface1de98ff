"""FILESVC_MAX_UPLOAD_BYTES on a real server: 413, detected while streaming, nothing kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import on_both_stacks
from .server import (
    UPLOAD_LIMIT_BYTES,
    LocalFile,
    MiB,
    RunningServer,
    User,
    assert_nothing_kept,
    make_random_file,
    new_blob,
    snapshot,
)
from .wire import PartialSender, chunked, connect, junk, read_early_response, request_head, run_curl

pytestmark = pytest.mark.e2e


# Stopped mid-stream, an S3 upload must abort its multipart upload as local disk drops
# its temp file.
limited_server_process = on_both_stacks(
    "limited_server_process", {"FILESVC_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT_BYTES)}
)


@pytest.fixture(scope="module")
def too_big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFile]:
    """Twice the limit."""
    file = make_random_file(
        tmp_path_factory.mktemp("too-big") / "twenty.bin", 2 * UPLOAD_LIMIT_BYTES
    )
    yield file
    file.path.unlink()


@pytest.mark.parametrize(
    "curl_args",
    [
        pytest.param([], id="content-length"),
        # Without `Expect: 100-continue` curl sends the body before any answer can stop it.
        pytest.param(["-H", "Expect:"], id="content-length-no-expect"),
        pytest.param(["-H", "Transfer-Encoding: chunked"], id="chunked"),
    ],
)
def test_multipart_upload_over_the_limit_is_413(
    limited_server: RunningServer,
    limited_editor: User,
    too_big: LocalFile,
    curl: str,
    tmp_path: Path,
    curl_args: list[str],
) -> None:
    before = snapshot(limited_server)

    result = run_curl(
        curl, tmp_path, "-H", f"Authorization: Bearer {limited_editor.token}", *curl_args,
        "-F", f"file=@{too_big.path}", limited_server.url("/api/v1/files"),
    )  # fmt: skip

    # When the server answers early and closes, curl may call it a send (55) or receive
    # (56) error; what matters is the answer it got.
    assert result.returncode in (0, 55, 56), result.stderr
    assert result.status == 413, result.body[:2000]
    if result.body:
        assert result.json()["code"] == "upload_too_large"
    assert_nothing_kept(limited_server, before)
    limited_server.assert_serving()


def test_chunked_raw_upload_is_stopped_while_streaming(
    limited_server: RunningServer, limited_editor: User
) -> None:
    before = snapshot(limited_server)
    head = request_head(
        "PUT",
        "/api/v1/files/raw/endless.bin",
        [
            ("Authorization", f"Bearer {limited_editor.token}"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", "application/octet-stream"),
        ],
    )
    # Stop 2 MiB past the limit and never send the last chunk: an answer now can only
    # come from a server that counted the bytes as they streamed.
    stop_after = UPLOAD_LIMIT_BYTES + 2 * MiB
    with (
        connect(limited_server) as sock,
        PartialSender(sock, head, chunked(junk(4 * UPLOAD_LIMIT_BYTES)), stop_after) as sender,
    ):
        response = read_early_response(sock)
    assert sender.sent < 4 * UPLOAD_LIMIT_BYTES

    assert response.status == 413, response.body[:2000]
    assert response.json()["code"] == "upload_too_large"
    assert_nothing_kept(limited_server, before)
    limited_server.assert_serving()


def test_chunked_raw_upload_with_curl_over_the_limit_is_413(
    limited_server: RunningServer,
    limited_editor: User,
    too_big: LocalFile,
    curl: str,
    tmp_path: Path,
) -> None:
    before = snapshot(limited_server)

    result = run_curl(
        curl, tmp_path, "-H", f"Authorization: Bearer {limited_editor.token}", "-T", "-",
        limited_server.url("/api/v1/files/raw/stdin.bin"),
        stdin=too_big.path,
    )  # fmt: skip

    assert result.returncode in (0, 55, 56), result.stderr
    assert result.status == 413, result.body[:2000]
    if result.body:
        assert result.json()["code"] == "upload_too_large"
    assert_nothing_kept(limited_server, before)
    limited_server.assert_serving()


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
@pytest.mark.parametrize(
    ("size", "status"),
    [(UPLOAD_LIMIT_BYTES, 201), (UPLOAD_LIMIT_BYTES + 1, 413)],
    ids=["at-the-limit", "one-byte-over"],
)
def test_the_limit_is_exact(
    limited_server: RunningServer,
    limited_editor: User,
    curl: str,
    tmp_path: Path,
    transfer: str,
    size: int,
    status: int,
) -> None:
    file = make_random_file(tmp_path / "edge.bin", size)
    before = snapshot(limited_server)
    if transfer == "content-length":
        args = ["-T", str(file.path), limited_server.url("/api/v1/files/raw/")]
    else:
        args = ["-T", "-", limited_server.url("/api/v1/files/raw/edge.bin")]

    result = run_curl(
        curl, tmp_path, "-H", f"Authorization: Bearer {limited_editor.token}", *args,
        stdin=file.path,
    )  # fmt: skip

    assert result.returncode in (0, 55, 56), result.stderr
    assert result.status == status, result.body[:2000]
    if status == 201:
        body = result.json()
        assert body["size"] == size
        assert body["sha256"] == file.sha256
        assert new_blob(limited_server, before).stat().st_size == size
    else:
        assert result.json()["code"] == "upload_too_large"
        assert_nothing_kept(limited_server, before)
