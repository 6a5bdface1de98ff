"""The API on the S3 backend only: sizes across the multipart boundary, failures at each
stage, what a download asks of the store, presigned redirects, the start-up check."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import EndpointConnectionError
from fastapi import FastAPI
from starlette.types import Message

from filesvc.config import Settings
from filesvc.deps import AppContext
from filesvc.storage.base import ByteRange, GetResult, StorageError
from filesvc.storage.s3 import S3Storage
from tests.conftest import Account, blob_files, running_app
from tests.files.helpers import file_ids, http_scope, sha256
from tests.seaweedfs import s3_client, stored_keys
from tests.transfers.sse import events_of

MiB = 1024 * 1024
PART = 5 * MiB  # the tests' part size (conftest.s3_settings)


@pytest.fixture
def stack() -> tuple[str, str]:
    # SQLite with S3 here; the shared API suite already runs PostgreSQL with S3.
    return ("sqlite", "s3")


def s3_of(app: FastAPI) -> S3Storage:
    context: AppContext = app.state.context
    assert isinstance(context.storage, S3Storage)
    return context.storage


class S3Operations:
    """The S3 operations the app makes, seen through botocore's event hooks."""

    def __init__(self, app: FastAPI) -> None:
        self.names: list[str] = []
        self.params: list[dict[str, Any]] = []
        s3_of(app).calls.client.meta.events.register("before-parameter-build.s3", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.names.append(model.name)
        self.params.append(dict(params))


@pytest.fixture
def operations(app: FastAPI) -> S3Operations:
    return S3Operations(app)


async def put_raw(
    client: httpx.AsyncClient, account: Account, data: bytes, name: str = "blob.bin"
) -> httpx.Response:
    return await client.put(f"/api/v1/files/raw/{name}", content=data, headers=account.headers)


@pytest.mark.parametrize(
    "size",
    [0, 1, PART - 1, PART, PART + 1],
    ids=["0B", "1B", "5MiB-1", "5MiB", "5MiB+1"],
)
async def test_sizes_at_the_multipart_boundary_round_trip(
    client: httpx.AsyncClient,
    editor: Account,
    settings: Settings,
    operations: S3Operations,
    size: int,
) -> None:
    data = os.urandom(size)

    response = await put_raw(client, editor, data)

    assert response.status_code == 201, response.text
    file = response.json()
    assert file["size"] == size
    assert file["sha256"] == sha256(data)
    multipart = "CreateMultipartUpload" in operations.names
    assert multipart == (size >= PART)
    assert ("PutObject" in operations.names) == (size < PART)
    download = await client.get(file["content_url"], headers=editor.headers)
    assert download.status_code == 200
    assert sha256(download.content) == sha256(data)
    assert download.headers["content-length"] == str(size)
    [stored] = blob_files(settings)
    assert ".tmp" not in stored.parts


@pytest.mark.parametrize("route", ["raw", "multipart"])
async def test_a_failed_upload_part_is_503_and_leaves_nothing(
    app: FastAPI, client: httpx.AsyncClient, editor: Account, settings: Settings, route: str
) -> None:
    failures: list[int] = []

    def fail_second_part(params: dict[str, Any], **_: Any) -> None:
        if params.get("PartNumber") == 2 and not failures:
            failures.append(2)
            raise EndpointConnectionError(endpoint_url="http://s3.example.invalid")

    events = s3_of(app).calls.client.meta.events
    events.register("before-parameter-build.s3.UploadPart", fail_second_part)
    data = os.urandom(4 * PART)
    transfer_id = f"s3-fails-{route}"
    headers = {**editor.headers, "X-Transfer-Id": transfer_id}

    if route == "raw":
        response = await client.put("/api/v1/files/raw/blob.bin", content=data, headers=headers)
    else:
        response = await client.post(
            "/api/v1/files", files={"file": ("big.bin", data)}, headers=headers
        )

    assert failures == [2]
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "storage_unavailable"
    assert int(response.headers["retry-after"]) > 0
    assert "s3.example.invalid" not in response.text
    # Its watchers learn how it ended, in the response's own words.
    watched = await client.get(f"/api/v1/transfers/{transfer_id}/events", headers=editor.headers)
    failed = events_of(watched.text)[-1]
    assert failed.event == "failed"
    assert failed.data["code"] == "storage_unavailable"
    assert failed.data["detail"] == response.json()["detail"]
    assert failed.data["direction"] == "upload"
    assert await file_ids(client, editor) == []
    assert blob_files(settings) == []  # no object, no pending multipart upload


@pytest.mark.parametrize("route", ["raw", "multipart"])
async def test_a_checksum_mismatch_after_several_parts_is_400_and_aborts_the_upload(
    client: httpx.AsyncClient,
    editor: Account,
    settings: Settings,
    operations: S3Operations,
    route: str,
) -> None:
    data = os.urandom(2 * PART + 123)
    wrong = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()
    headers = {**editor.headers, "Content-Digest": f"sha-256=:{wrong}:"}

    if route == "raw":
        response = await client.put("/api/v1/files/raw/big.bin", content=data, headers=headers)
    else:
        response = await client.post(
            "/api/v1/files", files={"file": ("big.bin", data)}, headers=headers
        )

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "checksum_mismatch"
    assert "CreateMultipartUpload" in operations.names
    assert operations.names.count("UploadPart") >= 2
    assert "AbortMultipartUpload" in operations.names
    assert "CompleteMultipartUpload" not in operations.names
    assert settings.s3_endpoint_url is not None
    assert settings.s3_bucket is not None
    store = s3_client(settings.s3_endpoint_url)
    assert stored_keys(store, settings.s3_bucket) == []
    assert store.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads", []) == []
    assert await file_ids(client, editor) == []


async def test_replace_and_delete_remove_the_old_objects(
    client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    file = (await put_raw(client, editor, os.urandom(PART + 1))).json()
    [first] = blob_files(settings)

    replaced = await client.put(
        f"/api/v1/files/{file['id']}/content", content=b"new bytes", headers=editor.headers
    )
    assert replaced.status_code == 200, replaced.text
    [second] = blob_files(settings)
    assert second != first

    deleted = await client.delete(f"/api/v1/files/{file['id']}", headers=editor.headers)
    assert deleted.status_code == 204
    assert blob_files(settings) == []


async def test_head_and_conditional_requests_never_touch_the_store(
    client: httpx.AsyncClient, editor: Account, operations: S3Operations
) -> None:
    data = os.urandom(1000)
    file = (await put_raw(client, editor, data)).json()
    operations.names.clear()
    etag = f'"{file["sha256"]}"'

    head = await client.head(file["content_url"], headers=editor.headers)
    cached = await client.get(
        file["content_url"], headers={**editor.headers, "If-None-Match": etag}
    )
    since = await client.get(
        file["content_url"],
        headers={**editor.headers, "If-Modified-Since": head.headers["last-modified"]},
    )

    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == "1000"
    assert head.headers["etag"] == etag
    assert head.headers["accept-ranges"] == "bytes"
    assert cached.status_code == 304
    assert since.status_code == 304
    assert operations.names == []


@pytest.mark.parametrize(
    ("range_header", "s3_range", "start", "end"),
    [
        ("bytes=10-19", "bytes=10-19", 10, 20),
        ("bytes=-5", "bytes=995-999", 995, 1000),
        ("bytes=990-", "bytes=990-999", 990, 1000),
    ],
)
async def test_a_single_range_is_passed_through_to_s3(
    client: httpx.AsyncClient,
    editor: Account,
    operations: S3Operations,
    range_header: str,
    s3_range: str,
    start: int,
    end: int,
) -> None:
    data = os.urandom(1000)
    file = (await put_raw(client, editor, data)).json()
    operations.params.clear()

    response = await client.get(
        file["content_url"], headers={**editor.headers, "Range": range_header}
    )

    assert response.status_code == 206
    assert response.content == data[start:end]
    assert response.headers["content-range"] == f"bytes {start}-{end - 1}/1000"
    assert response.headers["content-length"] == str(end - start)
    [get] = [p for p in operations.params if "Range" in p]
    assert get["Range"] == s3_range


async def test_unsatisfiable_and_stale_if_range(client: httpx.AsyncClient, editor: Account) -> None:
    data = os.urandom(100)
    file = (await put_raw(client, editor, data)).json()

    unsatisfiable = await client.get(
        file["content_url"], headers={**editor.headers, "Range": "bytes=100-"}
    )
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == "bytes */100"
    stale = await client.get(
        file["content_url"],
        headers={**editor.headers, "Range": "bytes=0-9", "If-Range": '"another-version"'},
    )
    assert stale.status_code == 200
    assert stale.content == data
    fresh = await client.get(
        file["content_url"],
        headers={**editor.headers, "Range": "bytes=0-9", "If-Range": f'"{file["sha256"]}"'},
    )
    assert fresh.status_code == 206
    assert fresh.content == data[:10]


async def test_redirect_answers_307_to_a_presigned_url(
    client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    data = b"fetched straight from the store"
    file = (await put_raw(client, editor, data, name="report final.txt")).json()

    response = await client.get(
        file["content_url"], params={"redirect": "true"}, headers=editor.headers
    )

    assert response.status_code == 307
    assert response.headers["cache-control"] == "no-store"
    url = response.headers["location"]
    assert settings.s3_endpoint_url is not None
    assert url.startswith(settings.s3_endpoint_url)
    disposition = "attachment; filename=\"report final.txt\"; filename*=UTF-8''report%20final.txt"
    query = httpx.URL(url).params
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == str(settings.s3_presign_expiry_seconds)
    assert query["X-Amz-Signature"]
    assert query["response-content-disposition"] == disposition
    async with httpx.AsyncClient() as direct:
        fetched = await direct.get(url)
    assert fetched.status_code == 200
    assert fetched.content == data
    assert fetched.headers["content-disposition"] == disposition


async def test_store_failing_before_the_first_byte_is_503(
    app: FastAPI, client: httpx.AsyncClient, editor: Account
) -> None:
    file = (await put_raw(client, editor, b"data")).json()

    def fail(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="http://s3.example.invalid")

    s3_of(app).calls.client.meta.events.register("before-parameter-build.s3.GetObject", fail)
    response = await client.get(file["content_url"], headers=editor.headers)

    assert response.status_code == 503
    assert response.json()["code"] == "storage_unavailable"
    assert "retry-after" in response.headers


async def test_store_failing_mid_download_cuts_the_body_and_logs_the_request_id(
    app: FastAPI,
    client: httpx.AsyncClient,
    editor: Account,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = os.urandom(3 * MiB)
    file = (await put_raw(client, editor, data)).json()
    storage = s3_of(app)
    real_get = storage.get

    async def failing_get(key: str, byte_range: ByteRange | None = None) -> GetResult:
        result = await real_get(key, byte_range)

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in result.chunks:
                yield chunk
                raise StorageError("S3 download failed: connection reset")

        return GetResult(meta=result.meta, range=result.range, chunks=chunks())

    monkeypatch.setattr(storage, "get", failing_get)
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    scope = http_scope("GET", file["content_url"], editor.token, (b"x-request-id", b"req-cut-42"))
    with caplog.at_level(logging.ERROR), pytest.raises(Exception):  # noqa: B017, PT011
        await app(scope, receive, send)

    start = messages[0]
    assert start["status"] == 200
    assert (b"content-length", str(len(data)).encode()) in start["headers"]
    bodies = [m for m in messages[1:] if m["type"] == "http.response.body"]
    sent = b"".join(m["body"] for m in bodies)
    assert 0 < len(sent) < len(data)
    assert all(m.get("more_body") for m in bodies), "the body must not end cleanly"
    logged = [r.getMessage() for r in caplog.records if "cut off" in r.getMessage()]
    assert logged
    assert "req-cut-42" in logged[0]


async def test_a_missing_bucket_stops_the_start_with_a_clear_message(
    settings: Settings,
) -> None:
    broken = settings.model_copy(update={"s3_bucket": "no-such-bucket-for-filesvc"})
    with pytest.raises(RuntimeError, match="'no-such-bucket-for-filesvc' does not exist"):
        async with running_app(broken):
            pass


def test_settings_refuse_s3_without_a_bucket() -> None:
    with pytest.raises(ValueError, match="FILESVC_S3_BUCKET"):
        Settings(storage="s3")
