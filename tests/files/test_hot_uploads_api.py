"""The hot uploads (files/hot_uploads.py): raw uploads taken before the router, answered
exactly as the route answers them, errors included, and leaving nothing behind when they
fail; everything else still reaches the route. Both stacks (local disk, S3)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from filesvc.config import Settings
from filesvc.files.hot_uploads import HotUploads
from filesvc.main import create_app
from tests.conftest import Account, blob_files, client_for
from tests.files.conftest import RouterLog, client_without
from tests.files.helpers import PER_ANSWER, file_ids, sha256
from tests.scrape import value

SMALL = os.urandom(4096)
RAW = "/api/v1/files/raw"
# What differs between two uploads of the same bytes: the new file's id and times.
PER_FILE = {"id", "created_at", "updated_at", "content_url"}


async def test_raw_uploads_are_taken_before_the_router(
    routed: RouterLog, client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    routed.paths.clear()  # signing in the accounts
    created = await client.put(f"{RAW}/avatar.png", content=SMALL, headers=editor.headers)
    assert created.status_code == 201, created.text
    file = created.json()
    assert file["name"] == "avatar.png"
    assert file["size"] == len(SMALL)
    assert file["sha256"] == sha256(SMALL)
    assert file["visibility"] == "private"
    assert created.headers["location"] == f"/api/v1/files/{file['id']}"
    public = await client.put(
        f"{RAW}/dir/a b.txt?visibility=public&unknown=1",
        content=b"hello",
        headers={
            **editor.headers,
            "content-type": "text/plain",
            "x-checksum-sha256": sha256(b"hello"),
        },
    )
    assert public.status_code == 201, public.text
    assert public.json()["visibility"] == "public"
    assert routed.paths == []

    # Committed: the row answers, the bytes come back, a blob per file is stored.
    listed = await client.get(f"/api/v1/files/{file['id']}", headers=editor.headers)
    assert listed.json() == file
    content = await client.get(f"/api/v1/files/{file['id']}/content", headers=editor.headers)
    assert sha256(content.content) == sha256(SMALL)
    anonymous = await client.get(f"/api/v1/files/{public.json()['id']}/content")
    assert anonymous.content == b"hello"
    assert len(blob_files(settings)) == 2


async def test_what_only_the_route_answers_reaches_it(
    routed: RouterLog, client: httpx.AsyncClient, editor: Account, viewer: Account
) -> None:
    routed.paths.clear()
    url = f"{RAW}/a.bin"
    anonymous = await client.put(url, content=SMALL)
    assert anonymous.status_code == 401
    other_scheme = await client.put(
        url, content=SMALL, headers={"authorization": f"Token {editor.token}"}
    )
    assert other_scheme.status_code == 401
    bad_token = await client.put(url, content=SMALL, headers={"authorization": "Bearer nope"})
    assert bad_token.status_code == 401
    viewer_put = await client.put(url, content=SMALL, headers=viewer.headers)
    assert viewer_put.status_code == 403
    tracked = await client.put(
        url, content=SMALL, headers={**editor.headers, "x-transfer-id": "hot-up-1"}
    )
    assert tracked.status_code == 201
    assert tracked.headers["x-transfer-id"] == "hot-up-1"
    by_query = await client.put(
        f"{url}?transfer_id=hot-up-2", content=SMALL, headers=editor.headers
    )
    assert by_query.status_code == 201
    bad_visibility = await client.put(
        f"{url}?visibility=secret", content=SMALL, headers=editor.headers
    )
    assert bad_visibility.status_code == 422
    twice = await client.put(
        f"{url}?visibility=public&visibility=private", content=SMALL, headers=editor.headers
    )
    assert twice.status_code == 201
    assert routed.paths == [url] * 8


async def test_failed_hot_uploads_answer_the_apps_errors_and_leave_nothing(
    limited: tuple[httpx.AsyncClient, RouterLog], editor: Account, settings: Settings
) -> None:
    client, routed = limited
    mismatch = await client.put(
        f"{RAW}/a.txt",
        content=b"s" * 100,
        headers={**editor.headers, "x-checksum-sha256": "0" * 64},
    )
    assert mismatch.status_code == 400
    assert mismatch.json()["code"] == "checksum_mismatch"
    declared = await client.put(
        f"{RAW}/big.txt", content=b"x" * (QUOTA + 1), headers=editor.headers
    )
    assert declared.status_code == 413
    assert declared.json()["code"] == "quota_exceeded"
    # No length declared: the quota stops the body while it is being stored.
    streamed = await client.put(
        f"{RAW}/big.txt", content=_chunks(b"x" * 600, b"x" * 600), headers=editor.headers
    )
    assert streamed.status_code == 413
    assert streamed.json()["code"] == "quota_exceeded"
    refused_type = await client.put(f"{RAW}/page.html", content=b"<p>", headers=editor.headers)
    assert refused_type.status_code == 415
    assert refused_type.json()["code"] == "content_type_not_allowed"
    assert routed.paths == []
    assert blob_files(settings) == []
    assert await file_ids(client, editor) == []


async def test_hot_uploads_are_logged_and_counted_under_their_route(
    client: httpx.AsyncClient, editor: Account, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="filesvc.access"):
        await client.put(f"{RAW}/a.bin", content=SMALL, headers=editor.headers)
    routes = [r.route for r in caplog.records if r.name == "filesvc.access"]  # type: ignore[attr-defined]
    assert routes == ["/api/v1/files/raw/{name}"]
    mismatch = await client.put(
        f"{RAW}/b.bin", content=SMALL, headers={**editor.headers, "x-checksum-sha256": "0" * 64}
    )
    assert mismatch.status_code == 400
    text = (await client.get("/metrics")).text
    assert value(text, "filesvc_uploads_total", outcome="created") == 1
    assert value(text, "filesvc_uploads_total", outcome="checksum_mismatch") == 1
    assert value(text, "filesvc_transfers_active", direction="upload") == 0


QUOTA = 1000
LIMITS = {"user_quota_bytes": QUOTA, "allowed_content_types": ["image/*", "text/plain"]}


async def _chunks(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest.fixture
async def limited(
    settings: Settings, app: FastAPI
) -> AsyncIterator[tuple[httpx.AsyncClient, RouterLog]]:
    """A second app on the same database and storage, with a quota and a type list, and a
    log of what reaches its router."""
    limited_app = create_app(settings.model_copy(update=LIMITS))
    log = RouterLog()
    limited_app.user_middleware.append(log.middleware())
    async with limited_app.router.lifespan_context(limited_app), client_for(limited_app) as c:
        yield c, log


@pytest.fixture
async def routes_only(settings: Settings, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The same limited service without the hot uploads: only routes."""
    async with client_without(settings.model_copy(update=LIMITS), HotUploads) as client:
        yield client


async def test_hot_uploads_answer_as_the_route(
    limited: tuple[httpx.AsyncClient, RouterLog],
    routes_only: httpx.AsyncClient,
    editor: Account,
    settings: Settings,
) -> None:
    client, routed = limited
    uploads: list[tuple[str, bytes, dict[str, str]]] = [
        (f"{RAW}/photo.jpg", b"j" * 100, editor.headers),
        (f"{RAW}/n%C3%A4me.txt?visibility=public", "é".encode(), editor.headers),
        (f"{RAW}/typed", b"{}", {**editor.headers, "content-type": "text/plain"}),
        (f"{RAW}/empty.txt", b"", editor.headers),
        (f"{RAW}/sum.txt", b"s", {**editor.headers, "x-checksum-sha256": sha256(b"s")}),
        (f"{RAW}/bad-sum.txt", b"s", {**editor.headers, "x-checksum-sha256": "0" * 64}),
        (f"{RAW}/bad-digest.txt", b"s", {**editor.headers, "content-digest": "sha-256=:x:"}),
        (f"{RAW}/big.txt", b"x" * (QUOTA + 1), editor.headers),
        (f"{RAW}/page.html", b"<p>", editor.headers),
    ]
    for url, body, headers in uploads:
        hot = await client.put(url, content=body, headers=headers)
        routed_answer = await routes_only.put(url, content=body, headers=headers)
        assert hot.status_code == routed_answer.status_code, url
        assert _comparable(hot) == _comparable(routed_answer), url
        if hot.status_code == 201:
            assert hot.headers["location"] == f"/api/v1/files/{hot.json()['id']}"
            assert routed_answer.headers["location"] == (
                f"/api/v1/files/{routed_answer.json()['id']}"
            )
    assert routed.paths == []
    assert {201, 400, 413, 415} <= {
        (await client.put(url, content=body, headers=headers)).status_code
        for url, body, headers in uploads
    }


def _comparable(response: httpx.Response) -> tuple[list[tuple[str, str]], Any]:
    ignored = PER_ANSWER | {"location", "content-length"}
    headers = sorted((k, v) for k, v in response.headers.multi_items() if k not in ignored)
    if response.status_code != 201:
        return headers, response.content
    body = {k: v for k, v in response.json().items() if k not in PER_FILE}
    return headers, body
