"""The hot reads (files/hot_reads.py): metadata, small downloads and small share-link
downloads answered before the router, exactly as the routes answer them; everything else
still reaches the routes. Both stacks (local disk, S3)."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from filesvc.config import Settings
from filesvc.files.hot_reads import HotReads
from tests.conftest import Account
from tests.files.conftest import RouterLog, client_without
from tests.files.helpers import PER_ANSWER, uploaded

SMALL = os.urandom(4096)


async def test_small_reads_are_answered_before_the_router(
    routed: RouterLog, client: httpx.AsyncClient, editor: Account
) -> None:
    file = await uploaded(client, editor, data=SMALL, filename="avatar.png")
    url = f"/api/v1/files/{file['id']}"
    routed.paths.clear()

    meta = await client.get(url, headers=editor.headers)
    assert meta.status_code == 200
    assert meta.json() == file
    first = await client.get(f"{url}/content", headers=editor.headers)
    assert first.status_code == 200
    assert first.content == SMALL
    inline = await client.get(f"{url}/content?disposition=inline", headers=editor.headers)
    assert inline.headers["content-disposition"].startswith("inline")
    by_query = await client.get(f"{url}/content?access_token={editor.token}")
    assert by_query.content == SMALL
    head = await client.head(f"{url}/content", headers=editor.headers)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(SMALL))
    revalidated = await client.get(
        f"{url}/content", headers={**editor.headers, "if-none-match": first.headers["etag"]}
    )
    assert revalidated.status_code == 304
    assert routed.paths == []

    # What only the routes answer: their answers are unchanged.
    ranged = await client.get(f"{url}/content", headers={**editor.headers, "range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert ranged.content == SMALL[:10]
    tracked = await client.get(
        f"{url}/content", headers={**editor.headers, "x-transfer-id": "hot-reads-1"}
    )
    assert tracked.status_code == 200
    assert tracked.headers["x-transfer-id"] == "hot-reads-1"
    assert (await client.get(f"{url}/content?redirect=false", headers=editor.headers)).content == (
        SMALL
    )
    assert (
        await client.get(f"{url}/content?disposition=x", headers=editor.headers)
    ).status_code == (422)
    assert routed.paths == [f"{url}/content"] * 4


async def test_refusals_and_unknown_ids_reach_the_router(
    routed: RouterLog, client: httpx.AsyncClient, editor: Account, viewer: Account
) -> None:
    file = await uploaded(client, editor, data=SMALL)
    url = f"/api/v1/files/{file['id']}"
    routed.paths.clear()

    hidden = await client.get(f"{url}/content", headers=viewer.headers)
    assert hidden.status_code == 404
    assert hidden.json()["code"] == "file_not_found"
    anonymous = await client.get(url)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    bad_token = await client.get(url, headers={"Authorization": "Bearer not-a-token"})
    assert bad_token.status_code == 401
    unknown = await client.get("/api/v1/files/no-such-id/content", headers=editor.headers)
    assert unknown.status_code == 404
    posted = await client.post(f"{url}/content", headers=editor.headers)
    assert posted.status_code == 405
    assert len(routed.paths) == 5


async def test_larger_files_stream_through_the_route(
    app: FastAPI, routed: RouterLog, client: httpx.AsyncClient, editor: Account
) -> None:
    big = os.urandom(app.state.settings.small_file_cache_max_file_bytes + 1)
    file = await uploaded(client, editor, data=big)
    routed.paths.clear()
    response = await client.get(f"/api/v1/files/{file['id']}/content", headers=editor.headers)
    assert response.content == big
    assert routed.paths == [f"/api/v1/files/{file['id']}/content"]


async def test_hot_reads_are_logged_under_their_route(
    client: httpx.AsyncClient, editor: Account, caplog: pytest.LogCaptureFixture
) -> None:
    file = await uploaded(client, editor, data=SMALL)
    with caplog.at_level(logging.INFO, logger="filesvc.access"):
        await client.get(f"/api/v1/files/{file['id']}", headers=editor.headers)
        await client.get(f"/api/v1/files/{file['id']}/content", headers=editor.headers)
    routes = [r.route for r in caplog.records if r.name == "filesvc.access"]  # type: ignore[attr-defined]
    assert routes == ["/api/v1/files/{file_id}", "/api/v1/files/{file_id}/content"]


async def share_link(client: httpx.AsyncClient, account: Account, file_id: str) -> str:
    made = await client.post(
        f"/api/v1/files/{file_id}/links", json={"expires_in": 600}, headers=account.headers
    )
    assert made.status_code == 201, made.text
    url: str = made.json()["url"]
    return url


async def test_small_share_link_downloads_are_answered_before_the_router(
    routed: RouterLog, client: httpx.AsyncClient, editor: Account
) -> None:
    file = await uploaded(client, editor, data=SMALL, filename="avatar.png")
    url = await share_link(client, editor, file["id"])
    routed.paths.clear()

    first = await client.get(url)
    assert first.status_code == 200
    assert first.content == SMALL
    assert first.headers["referrer-policy"] == "no-referrer"
    head = await client.head(f"{url}?disposition=inline")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(SMALL))
    revalidated = await client.get(url, headers={"if-none-match": first.headers["etag"]})
    assert revalidated.status_code == 304
    assert routed.paths == []

    # A tampered link, a range, a tracked download and a replaced file reach the route.
    tampered_url = url[:-2] + ("AA" if not url.endswith("AA") else "BB")
    tampered = await client.get(tampered_url)
    assert tampered.status_code == 403
    assert tampered.json()["code"] == "invalid_link"
    ranged = await client.get(url, headers={"range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert ranged.content == SMALL[:10]
    tracked = await client.get(url, headers={"x-transfer-id": "hot-shared-1"})
    assert tracked.headers["x-transfer-id"] == "hot-shared-1"
    content_url = f"/api/v1/files/{file['id']}/content"
    replaced = await client.put(content_url, content=b"new", headers=editor.headers)
    assert replaced.status_code == 200
    outdated = await client.get(url)
    assert outdated.status_code == 403
    assert outdated.json()["code"] == "link_outdated"
    assert routed.paths == [tampered_url, url, url, content_url, url]


@pytest.fixture
async def routes_only(settings: Settings, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The same service (database, storage, key) without the hot reads: only routes."""
    async with client_without(settings, HotReads) as client:
        yield client


async def test_hot_reads_answer_byte_for_byte_as_the_routes(
    client: httpx.AsyncClient,
    routes_only: httpx.AsyncClient,
    editor: Account,
    viewer: Account,
) -> None:
    mine = await uploaded(
        client, editor, data=SMALL, filename="photo.jpg", content_type="image/jpeg"
    )
    public = await uploaded(
        client, editor, data=b"<svg/>", filename="a.svg", fields={"visibility": "public"}
    )
    etag = f'"{mine["sha256"]}"'
    link = await share_link(client, editor, mine["id"])
    requests = [
        ("GET", link, {}),
        ("HEAD", link, {}),
        ("GET", f"{link}?disposition=inline", {}),
        ("GET", link, {"if-none-match": etag}),
        ("GET", f"/api/v1/files/{mine['id']}", editor.headers),
        ("GET", f"/api/v1/files/{public['id']}", {}),
        ("GET", f"/api/v1/files/{public['id']}", viewer.headers),
        ("GET", f"/api/v1/files/{mine['id']}/content", editor.headers),
        ("HEAD", f"/api/v1/files/{mine['id']}/content", editor.headers),
        ("GET", f"/api/v1/files/{mine['id']}/content?disposition=inline", editor.headers),
        ("GET", f"/api/v1/files/{mine['id']}/content?access_token={editor.token}&v=2", {}),
        ("GET", f"/api/v1/files/{mine['id']}/content", {**editor.headers, "if-none-match": etag}),
        ("GET", f"/api/v1/files/{public['id']}/content?disposition=inline", {}),
        # Only a Bearer header is a token: another scheme is an anonymous caller.
        ("GET", f"/api/v1/files/{mine['id']}", {"authorization": f"Token {editor.token}"}),
        ("GET", f"/api/v1/files/{mine['id']}/content", {"authorization": f"Basic {editor.token}"}),
        ("GET", f"/api/v1/files/{public['id']}", {"authorization": f"Token {editor.token}"}),
    ]
    for method, url, headers in requests:
        for _ in range(2):  # the second time from the small-file cache
            hot = await client.request(method, url, headers=headers)
            routed = await routes_only.request(method, url, headers=headers)
            assert hot.status_code == routed.status_code, (method, url)
            assert _comparable(hot.headers) == _comparable(routed.headers), (method, url)
            assert hot.content == routed.content, (method, url)


def _comparable(headers: httpx.Headers) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in headers.multi_items() if k not in PER_ANSWER)
