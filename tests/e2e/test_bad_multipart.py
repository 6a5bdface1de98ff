"""Malformed multipart bodies get a quick, clean 4xx and leave nothing behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .conftest import on_both_stacks
from .server import MiB, RunningServer, User, assert_nothing_kept, snapshot
from .wire import (
    PartialSender,
    closing,
    connect,
    multipart_content_type,
    part,
    raw_exchange,
    read_early_response,
    request_head,
)

pytestmark = pytest.mark.e2e


# Whatever the body's fault, nothing may stay behind: no blob, no pending multipart upload.
server_process = on_both_stacks()


BOUNDARY = b"e2e-boundary-7c1f"
FILE_PART = b'form-data; name="file"; filename="a.bin"'


def upload_head(user: User, content_type: str, length: int) -> bytes:
    return request_head(
        "POST",
        "/api/v1/files",
        [
            ("Authorization", f"Bearer {user.token}"),
            ("Content-Type", content_type),
            ("Content-Length", str(length)),
        ],
    )


def repeated(pattern: bytes, total: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    block = (pattern * (chunk // len(pattern) + 1))[:chunk]
    for _ in range(total // chunk):
        yield block


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param(b"junk ", id="junk"),
        # Blank lines are what the parser skips before the first boundary: only a cap on
        # the preamble stops them.
        pytest.param(b"\r\n", id="blank-lines"),
    ],
)
def test_a_preamble_flood_is_refused_before_the_body_is_sent(
    server: RunningServer, editor: User, pattern: bytes
) -> None:
    before = snapshot(server)
    declared = 10 * MiB
    stop_after = 1 * MiB
    head = upload_head(editor, multipart_content_type(BOUNDARY), declared)

    with (
        connect(server) as sock,
        PartialSender(sock, head, repeated(pattern, declared), stop_after) as sender,
    ):
        response = read_early_response(sock)

    # At most 1 MiB of the declared 10 MiB was ever sent: the answer came before the body.
    assert sender.sent <= stop_after
    assert response.status == 400, response.body[:2000]
    assert response.json()["code"] == "malformed_multipart"
    assert_nothing_kept(server, before)
    server.assert_serving()


BROKEN_BODIES = {
    "other-boundary": (
        part(b"not-the-declared-one", FILE_PART, b"data") + closing(b"not-the-declared-one")
    ),
    "no-closing-boundary": part(BOUNDARY, FILE_PART, b"x" * (2 * MiB)),
    "truncated-closing-boundary": part(BOUNDARY, FILE_PART, b"x" * (2 * MiB)) + b"--" + BOUNDARY,
    "garbage-after-boundary": b"--" + BOUNDARY + b"garbage\r\n" + closing(BOUNDARY),
    "part-without-disposition": (
        b"--" + BOUNDARY + b"\r\nContent-Type: text/plain\r\n\r\ndata\r\n" + closing(BOUNDARY)
    ),
    "disposition-without-name": part(BOUNDARY, b"form-data", b"data") + closing(BOUNDARY),
    "empty-body": b"",
}


@pytest.mark.parametrize("case", list(BROKEN_BODIES))
def test_a_broken_boundary_is_400(server: RunningServer, editor: User, case: str) -> None:
    body = BROKEN_BODIES[case]
    before = snapshot(server)

    response = raw_exchange(
        server, upload_head(editor, multipart_content_type(BOUNDARY), len(body)), body
    )

    assert response.status == 400, response.body[:2000]
    assert response.json()["code"] == "malformed_multipart"
    assert_nothing_kept(server, before)
    server.assert_serving()


@pytest.mark.parametrize(
    ("content_type", "status", "code"),
    [
        ("multipart/form-data", 415, "multipart_required"),
        ("application/octet-stream", 415, "multipart_required"),
        ("multipart/form-data; boundary=" + "b" * 300, 400, "malformed_multipart"),
    ],
    ids=["no-boundary", "not-multipart", "boundary-too-long"],
)
def test_a_content_type_without_a_usable_boundary_is_refused(
    server: RunningServer, editor: User, content_type: str, status: int, code: str
) -> None:
    body = part(BOUNDARY, FILE_PART, b"data") + closing(BOUNDARY)
    before = snapshot(server)

    response = raw_exchange(server, upload_head(editor, content_type, len(body)), body)

    assert response.status == status, response.body[:2000]
    assert response.json()["code"] == code
    assert_nothing_kept(server, before)


MISSING_FILE_BODIES = {
    "only-a-name-field": part(BOUNDARY, b'form-data; name="name"', b"x.txt", None)
    + closing(BOUNDARY),
    "file-under-another-name": part(BOUNDARY, b'form-data; name="upload"; filename="a.bin"', b"x")
    + closing(BOUNDARY),
    "no-parts": closing(BOUNDARY),
    "many-fields": b"".join(
        part(BOUNDARY, b'form-data; name="visibility"', b"private", None) for _ in range(20)
    )
    + closing(BOUNDARY),
}


@pytest.mark.parametrize("case", list(MISSING_FILE_BODIES))
def test_a_form_without_a_file_part_is_400(server: RunningServer, editor: User, case: str) -> None:
    body = MISSING_FILE_BODIES[case]
    before = snapshot(server)

    response = raw_exchange(
        server, upload_head(editor, multipart_content_type(BOUNDARY), len(body)), body
    )

    assert response.status == 400, response.body[:2000]
    assert response.json()["code"] == "missing_file"
    assert_nothing_kept(server, before)
