from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from sqlalchemy.pool import QueuePool
from starlette.types import Message

from filesvc.config import Settings
from filesvc.deps import AppContext
from tests.conftest import Account, blob_files
from tests.files.helpers import file_ids, http_scope, sha256, upload, uploaded


async def test_multipart_upload_returns_file_and_location(
    client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    data = bytes(range(256)) * 5000
    response = await upload(
        client, editor, data=data, filename="photo.jpg", content_type="image/jpeg"
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/api/v1/files/{body['id']}"
    assert body["name"] == "photo.jpg"
    assert body["size"] == len(data)
    assert body["sha256"] == sha256(data)
    assert body["content_type"] == "image/jpeg"
    assert body["visibility"] == "private"
    assert body["owner_id"] == editor.id
    assert body["metadata"] == {}
    assert body["content_url"] == f"/api/v1/files/{body['id']}/content"
    assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")

    download = await client.get(body["content_url"], headers=editor.headers)
    assert sha256(download.content) == sha256(data)
    assert len([p for p in blob_files(settings) if ".tmp" not in p.parts]) == 1


async def test_form_fields_set_name_visibility_and_metadata(
    client: httpx.AsyncClient, editor: Account
) -> None:
    body = await uploaded(
        client,
        editor,
        fields={"name": "report.pdf", "visibility": "internal", "metadata": '{"project": "x"}'},
        content_type="application/octet-stream",
    )
    assert body["name"] == "report.pdf"
    assert body["visibility"] == "internal"
    assert body["metadata"] == {"project": "x"}
    # A generic declared type is replaced by a guess from the name.
    assert body["content_type"] == "application/pdf"


async def test_fields_after_the_file_part_still_apply(
    client: httpx.AsyncClient, editor: Account
) -> None:
    boundary = "XyZ"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
        "abc\r\n"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="visibility"\r\n\r\n'
        "public\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    response = await client.post(
        "/api/v1/files",
        content=body,
        headers={**editor.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["visibility"] == "public"
    assert response.json()["size"] == 3


async def test_unknown_type_without_extension_is_octet_stream(
    client: httpx.AsyncClient, editor: Account
) -> None:
    body = await uploaded(client, editor, filename="README", content_type="")
    assert body["content_type"] == "application/octet-stream"


async def test_batch_upload_stores_every_file(client: httpx.AsyncClient, editor: Account) -> None:
    files = [("file", (f"f{i}.txt", f"content {i}".encode(), "text/plain")) for i in range(3)]
    response = await client.post(
        "/api/v1/files/batch", files=files, data={"visibility": "internal"}, headers=editor.headers
    )
    assert response.status_code == 201, response.text
    items = response.json()["items"]
    assert [item["name"] for item in items] == ["f0.txt", "f1.txt", "f2.txt"]
    assert [item["sha256"] for item in items] == [sha256(f"content {i}".encode()) for i in range(3)]
    assert {item["visibility"] for item in items} == {"internal"}
    assert sorted(await file_ids(client, editor)) == sorted(item["id"] for item in items)


async def test_batch_is_all_or_nothing(
    client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    good = b"good bytes"
    bad = b"bad bytes"
    boundary = "B0undary"
    parts = [
        ("a.txt", good, sha256(good)),
        ("b.txt", bad, "0" * 64),  # wrong checksum on the second part
    ]
    body = b""
    for name, data, digest in parts:
        body += (
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
                f"X-Checksum-SHA256: {digest}\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    response = await client.post(
        "/api/v1/files/batch",
        content=body,
        headers={**editor.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "checksum_mismatch"
    assert await file_ids(client, editor) == []
    assert blob_files(settings) == []


async def test_single_upload_rejects_a_second_file(
    client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    files = [("file", ("a.txt", b"a", "text/plain")), ("file", ("b.txt", b"b", "text/plain"))]
    response = await client.post("/api/v1/files", files=files, headers=editor.headers)
    assert response.status_code == 400
    assert response.json()["code"] == "too_many_files"
    assert blob_files(settings) == []


async def test_raw_upload_with_content_length(client: httpx.AsyncClient, editor: Account) -> None:
    data = b"\x00\x01binary" * 1000
    response = await client.put(
        "/api/v1/files/raw/data.bin",
        content=data,
        headers={**editor.headers, "Content-Type": "application/x-custom"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["name"], body["size"], body["sha256"]) == ("data.bin", len(data), sha256(data))
    assert body["content_type"] == "application/x-custom"
    assert response.headers["location"] == f"/api/v1/files/{body['id']}"


async def test_raw_upload_chunked_without_length(
    client: httpx.AsyncClient, editor: Account
) -> None:
    chunks = [bytes([i]) * 300_000 for i in range(10)]

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    response = await client.put(
        "/api/v1/files/raw/chunked.bin", content=body(), headers=editor.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == sha256(b"".join(chunks))
    assert response.json()["content_type"] == "application/octet-stream"


async def test_raw_upload_name_with_encoded_slash(
    client: httpx.AsyncClient, editor: Account
) -> None:
    response = await client.put(
        "/api/v1/files/raw/dir%2Fname%20with%20spaces.txt", content=b"x", headers=editor.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "dir/name with spaces.txt"
    assert response.json()["content_type"] == "text/plain"


async def test_matching_checksums_are_accepted(client: httpx.AsyncClient, editor: Account) -> None:
    data = b"checked bytes"
    digest = hashlib.sha256(data).digest()
    by_digest = await upload(
        client,
        editor,
        data=data,
        headers={"Content-Digest": f"sha-256=:{base64.b64encode(digest).decode()}:"},
    )
    assert by_digest.status_code == 201, by_digest.text
    by_hex = await client.put(
        "/api/v1/files/raw/c.bin",
        content=data,
        headers={**editor.headers, "X-Checksum-SHA256": digest.hex().upper()},
    )
    assert by_hex.status_code == 201, by_hex.text


async def test_replace_content_changes_bytes_and_removes_old_blob(
    client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    created = await uploaded(client, editor, data=b"version one")
    old_blobs = blob_files(settings)

    response = await client.put(
        f"/api/v1/files/{created['id']}/content", content=b"version two!", headers=editor.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["name"]) == (created["id"], created["name"])
    assert (body["size"], body["sha256"]) == (12, sha256(b"version two!"))
    download = await client.get(body["content_url"], headers=editor.headers)
    assert download.content == b"version two!"
    new_blobs = blob_files(settings)
    assert len(new_blobs) == 1
    assert new_blobs != old_blobs


async def test_replace_with_bad_checksum_keeps_old_content(
    client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    created = await uploaded(client, editor, data=b"original")
    response = await client.put(
        f"/api/v1/files/{created['id']}/content",
        content=b"replacement",
        headers={**editor.headers, "X-Checksum-SHA256": "0" * 64},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "checksum_mismatch"
    download = await client.get(created["content_url"], headers=editor.headers)
    assert download.content == b"original"
    assert len(blob_files(settings)) == 1


async def test_viewer_cannot_upload(client: httpx.AsyncClient, viewer: Account) -> None:
    response = await upload(client, viewer)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


async def test_auth_is_checked_before_the_body_is_read(client: httpx.AsyncClient) -> None:
    consumed: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for _ in range(100):
            consumed.append(1)
            yield b"x" * 65536

    response = await client.put(
        "/api/v1/files/raw/big.bin", content=body(), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "not_authenticated"
    assert consumed == []


async def test_openapi_shows_file_pickers(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    multipart = spec["paths"]["/api/v1/files"]["post"]["requestBody"]["content"]
    assert multipart["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    batch = spec["paths"]["/api/v1/files/batch"]["post"]["requestBody"]["content"]
    file_schema = batch["multipart/form-data"]["schema"]["properties"]["file"]
    assert file_schema["items"]["format"] == "binary"
    raw = spec["paths"]["/api/v1/files/raw/{name}"]["put"]["requestBody"]["content"]
    assert raw["application/octet-stream"]["schema"]["format"] == "binary"
    replace = spec["paths"]["/api/v1/files/{file_id}/content"]["put"]["requestBody"]["content"]
    assert replace["application/octet-stream"]["schema"]["format"] == "binary"
    assert json.dumps(spec)  # the schema serialises


async def test_no_database_connection_is_held_while_the_body_arrives(
    app: FastAPI, editor: Account
) -> None:
    """Call the app as a server would and look at the pool each time it asks for body."""
    context: AppContext = app.state.context
    pool = context.db.engine.pool
    assert isinstance(pool, QueuePool)
    checked_out_while_receiving: list[int] = []
    chunks = [b"a" * 100_000, b"b" * 100_000, b""]
    sent: list[Message] = []

    async def receive() -> Message:
        checked_out_while_receiving.append(pool.checkedout())
        body = chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = http_scope("PUT", "/api/v1/files/raw/slow.bin", editor.token)
    await app(scope, receive, send)
    assert sent[0]["status"] == 201
    assert checked_out_while_receiving == [0, 0, 0]


async def test_empty_form_fields_mean_not_given(client: httpx.AsyncClient, editor: Account) -> None:
    """HTML forms and Swagger UI send emptied text inputs as empty fields."""
    body = await uploaded(
        client, editor, filename="kept.txt", fields={"name": "", "metadata": "", "visibility": ""}
    )
    assert (body["name"], body["metadata"], body["visibility"]) == ("kept.txt", {}, "private")
