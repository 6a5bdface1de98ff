"""Bad input gets a clear 4xx with a JSON code, leaves no row, blob or temp file, and the
service keeps serving."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message

from filesvc.config import Settings
from tests.conftest import Account, blob_files, client_for, running_app, storage_root
from tests.files.helpers import file_ids, http_scope, upload, uploaded

LIMIT = 64 * 1024


@pytest.fixture
async def limited_client(settings: Settings, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same database and storage with a 64 KiB upload limit."""
    limited_settings = settings.model_copy(update={"max_upload_bytes": LIMIT})
    async with running_app(limited_settings) as limited, client_for(limited) as client:
        yield client


async def assert_nothing_kept(
    client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    assert await file_ids(client, account) == []
    assert blob_files(settings) == []
    assert (await client.get("/healthz")).status_code == 200


def multipart(boundary: str, *parts: tuple[str, bytes]) -> bytes:
    body = b""
    for disposition, data in parts:
        body += (
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
        )
    return body + f"--{boundary}--\r\n".encode()


async def test_upload_over_limit_with_length_is_413(
    limited_client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    response = await upload(limited_client, editor, data=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.json()["code"] == "upload_too_large"
    await assert_nothing_kept(limited_client, editor, settings)


@pytest.mark.parametrize("path", ["/api/v1/files/raw/big.bin", "/api/v1/files"])
async def test_chunked_upload_over_limit_stops_while_streaming(
    limited_client: httpx.AsyncClient, editor: Account, settings: Settings, path: str
) -> None:
    sent: list[int] = []
    boundary = "limitboundary"

    async def body() -> AsyncIterator[bytes]:
        if path.endswith("/files"):
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                'filename="big.bin"\r\n\r\n'
            ).encode()
        for _ in range(1000):  # 16 MiB on offer; the server must stop long before
            sent.append(16384)
            yield b"y" * 16384

    response = await limited_client.request(
        "POST" if path.endswith("/files") else "PUT",
        path,
        content=body(),
        headers={**editor.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "upload_too_large"
    assert sum(sent) <= LIMIT + 2 * 1024 * 1024  # stopped at the limit, not at the end
    await assert_nothing_kept(limited_client, editor, settings)


async def test_wrong_checksum_header_is_400_and_keeps_nothing(
    client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    wrong_digest = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    cases: list[dict[str, str]] = [
        {"X-Checksum-SHA256": hashlib.sha256(b"other").hexdigest()},
        {"Content-Digest": f"sha-256=:{wrong_digest}:"},
    ]
    for headers in cases:
        response = await upload(client, editor, data=b"the real bytes", headers=headers)
        assert response.status_code == 400
        assert response.json() == {
            "detail": "The uploaded bytes do not match the checksum the client sent.",
            "code": "checksum_mismatch",
        }
        raw = await client.put(
            "/api/v1/files/raw/a.bin",
            content=b"the real bytes",
            headers={**editor.headers, **headers},
        )
        assert raw.status_code == 400
        assert raw.json()["code"] == "checksum_mismatch"
    await assert_nothing_kept(client, editor, settings)


async def test_malformed_checksum_header_is_400(client: httpx.AsyncClient, editor: Account) -> None:
    response = await upload(client, editor, headers={"X-Checksum-SHA256": "not-hex"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_checksum"


@pytest.mark.parametrize(
    ("content_type", "body", "code"),
    [
        (
            "multipart/form-data; boundary=abc",
            multipart("abc", ('form-data; name="other"', b"value")),
            "missing_file",
        ),
        (
            "multipart/form-data; boundary=abc",
            multipart("xyz", ('form-data; name="file"; filename="a"', b"data")),
            "malformed_multipart",
        ),
        (
            "multipart/form-data; boundary=abc",
            b'--abc\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\ndata',
            "malformed_multipart",
        ),
        (
            "multipart/form-data; boundary=abc",
            b"--abc\r\nContent-Type: text/plain\r\n\r\ndata\r\n--abc--\r\n",
            "malformed_multipart",
        ),
        ("multipart/form-data", b"--abc--\r\n", "multipart_required"),
        ("application/json", b"{}", "multipart_required"),
        ("multipart/form-data; boundary=abc", b"", "malformed_multipart"),
    ],
    ids=[
        "no-file-part",
        "wrong-boundary",
        "truncated",
        "no-disposition",
        "no-boundary",
        "json",
        "empty",
    ],
)
async def test_broken_multipart_is_rejected(
    client: httpx.AsyncClient,
    editor: Account,
    settings: Settings,
    content_type: str,
    body: bytes,
    code: str,
) -> None:
    response = await client.post(
        "/api/v1/files", content=body, headers={**editor.headers, "Content-Type": content_type}
    )
    assert response.status_code in (400, 415)
    assert response.json()["code"] == code
    assert isinstance(response.json()["detail"], str)
    await assert_nothing_kept(client, editor, settings)


async def test_preamble_flood_is_cut_off_early(
    client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    sent: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"\r\n"  # a leading newline makes the parser skip rather than fail
        for _ in range(640):  # 10 MiB of junk on offer
            sent.append(16384)
            yield b"j" * 16384

    response = await client.post(
        "/api/v1/files",
        content=body(),
        headers={**editor.headers, "Content-Type": "multipart/form-data; boundary=abc"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_multipart"
    assert sum(sent) < 256 * 1024
    await assert_nothing_kept(client, editor, settings)


async def test_invalid_form_fields_discard_the_stored_blob(
    client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    for fields in ({"metadata": "[1, 2]"}, {"metadata": "{not json"}, {"visibility": "secret"}):
        response = await upload(client, editor, fields=fields)
        assert response.status_code == 400, fields
        assert response.json()["code"] == "invalid_field"
    await assert_nothing_kept(client, editor, settings)


@pytest.mark.parametrize(
    ("raw_name", "stored_name"),
    [
        (b"../../etc/passwd", "../../etc/passwd"),
        (b"a\x00.jpg", "a.jpg"),
        # Browsers percent-encode `"`, CR and LF in multipart file names (HTML spec).
        (b"a%22%0D%0AX: y", "a%22%0D%0AX: y"),
        (b"x" * 3996 + b".jpg", "x" * 251 + ".jpg"),
        ("名前.txt".encode(), "名前.txt"),
    ],
    ids=["traversal", "nul", "header-injection", "4000-bytes", "utf8"],
)
async def test_hostile_names_are_stored_as_text(
    client: httpx.AsyncClient,
    editor: Account,
    settings: Settings,
    raw_name: bytes,
    stored_name: str,
) -> None:
    body = (
        b'--abc\r\nContent-Disposition: form-data; name="file"; filename="'
        + raw_name
        + b'"\r\n\r\ncontent\r\n--abc--\r\n'
    )
    response = await client.post(
        "/api/v1/files",
        content=body,
        headers={**editor.headers, "Content-Type": "multipart/form-data; boundary=abc"},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["name"] == stored_name
    download = await client.get(created["content_url"], headers=editor.headers)
    assert download.content == b"content"
    disposition = download.headers["content-disposition"]
    assert "\r" not in disposition
    assert "\n" not in disposition
    assert "x" not in download.headers  # no injected header
    stored = blob_files(settings)
    assert len(stored) == 1
    assert stored[0].name != stored_name
    assert stored[0].is_relative_to(storage_root(settings))
    assert not (settings.data_dir.parent / "etc").exists()


async def _disconnect_halfway(
    app: FastAPI, token: str, path: str, content_type: str, first: bytes
) -> None:
    """Drive the app as a server would: two body chunks of a 50 MB upload, then a disconnect."""
    messages: list[Message] = [
        {"type": "http.request", "body": first + b"z" * 2_000_000, "more_body": True},
        {"type": "http.request", "body": b"z" * 2_000_000, "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        return None

    scope = http_scope(
        "PUT" if "raw" in path else "POST",
        path,
        token,
        (b"content-type", content_type.encode()),
        (b"content-length", b"50000000"),
    )
    await app(scope, receive, send)
    assert messages == []  # the app read up to the disconnect


async def test_client_disconnect_mid_upload_leaves_nothing(
    app: FastAPI, client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    await _disconnect_halfway(app, editor.token, "/api/v1/files/raw/cut.bin", "text/plain", b"")
    file_part = b'--abc\r\nContent-Disposition: form-data; name="file"; filename="cut.bin"\r\n\r\n'
    await _disconnect_halfway(
        app, editor.token, "/api/v1/files", "multipart/form-data; boundary=abc", file_part
    )
    await assert_nothing_kept(client, editor, settings)
    # and uploads still work afterwards
    await uploaded(client, editor)


async def test_header_splitting_name_via_raw_path_is_neutralised(
    client: httpx.AsyncClient, editor: Account
) -> None:
    response = await client.put(
        "/api/v1/files/raw/a%22%0DX:%20y", content=b"content", headers=editor.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == 'a"X: y'
    download = await client.get(response.json()["content_url"], headers=editor.headers)
    assert "x" not in download.headers
    assert download.headers["content-disposition"].startswith('attachment; filename="a_X: y"; ')
    # A decoded newline is cleaned like any other control character.
    newline = await client.put("/api/v1/files/raw/a%0AX", content=b"c", headers=editor.headers)
    assert newline.status_code == 201
    assert newline.json()["name"] == "aX"
