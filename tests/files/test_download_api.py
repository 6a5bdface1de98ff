from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.pool import QueuePool
from starlette.types import Message

from filesvc.config import Settings
from filesvc.deps import AppContext
from tests.conftest import Account
from tests.files.helpers import http_scope, sha256, uploaded

DATA = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
async def stored(client: httpx.AsyncClient, editor: Account) -> dict[str, Any]:
    return await uploaded(
        client, editor, data=DATA, filename="data.bin", content_type="application/x-data"
    )


async def test_full_download_headers(
    client: httpx.AsyncClient, editor: Account, stored: dict[str, Any]
) -> None:
    response = await client.get(stored["content_url"], headers=editor.headers)
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["content-type"] == "application/x-data"
    assert response.headers["etag"] == f'"{sha256(DATA)}"'
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "last-modified" in response.headers
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"data.bin\"; filename*=UTF-8''data.bin"
    )


async def test_redirect_is_307_on_s3_and_the_bytes_elsewhere(
    client: httpx.AsyncClient, editor: Account, stored: dict[str, Any], settings: Settings
) -> None:
    response = await client.get(
        stored["content_url"], params={"redirect": "true"}, headers=editor.headers
    )
    if settings.storage == "s3":
        assert response.status_code == 307
        assert "X-Amz-Signature=" in response.headers["location"]
    else:  # nothing to presign: served as usual
        assert response.status_code == 200
        assert response.content == DATA


async def test_head_sends_headers_only(
    client: httpx.AsyncClient, editor: Account, stored: dict[str, Any]
) -> None:
    response = await client.head(stored["content_url"], headers=editor.headers)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["etag"] == f'"{sha256(DATA)}"'


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=10000-", 10000, 10240),
        ("bytes=-40", 10200, 10240),
        ("bytes=10200-99999", 10200, 10240),
    ],
)
async def test_single_range(
    client: httpx.AsyncClient,
    editor: Account,
    stored: dict[str, Any],
    range_header: str,
    start: int,
    end: int,
) -> None:
    response = await client.get(
        stored["content_url"], headers={**editor.headers, "Range": range_header}
    )
    assert response.status_code == 206
    assert response.content == DATA[start:end]
    assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{len(DATA)}"
    assert response.headers["content-length"] == str(end - start)


async def test_multiple_ranges_are_multipart(
    client: httpx.AsyncClient, editor: Account, stored: dict[str, Any], settings: Settings
) -> None:
    response = await client.get(
        stored["content_url"], headers={**editor.headers, "Range": "bytes=0-1,100-101"}
    )
    if settings.storage == "s3":
        # A store sends one range per request: several are answered with the whole body.
        assert response.status_code == 200
        assert response.content == DATA
        return
    assert response.status_code == 206
    assert response.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert DATA[100:102] in response.content


async def test_unsatisfiable_range_is_416(
    client: httpx.AsyncClient, editor: Account, stored: dict[str, Any]
) -> None:
    response = await client.get(
        stored["content_url"], headers={**editor.headers, "Range": "bytes=20000-"}
    )
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(DATA)}"
    assert response.json()["code"] == "range_not_satisfiable"


@pytest.mark.parametrize(
    "range_header",
    [
        "bytes=abc",
        "bytes=5-1",
        "items=0-1",
        "bytes=",
        ",".join(["bytes=0-0"] + [f"{i}-{i}" for i in range(2, 1000, 2)]),
    ],
)
async def test_invalid_or_excessive_ranges_send_the_whole_file(
    client: httpx.AsyncClient, editor: Account, stored: dict[str, Any], range_header: str
) -> None:
    response = await client.get(
        stored["content_url"], headers={**editor.headers, "Range": range_header}
    )
    assert response.status_code == 200
    assert response.content == DATA


async def test_if_none_match_gives_304(
    client: httpx.AsyncClient, editor: Account, stored: dict[str, Any]
) -> None:
    etag = f'"{stored["sha256"]}"'
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = await client.get(
            stored["content_url"], headers={**editor.headers, "If-None-Match": header}
        )
        assert response.status_code == 304, header
        assert response.content == b""
        assert response.headers["etag"] == etag
    miss = await client.get(
        stored["content_url"], headers={**editor.headers, "If-None-Match": '"x"'}
    )
    assert miss.status_code == 200


async def test_if_modified_since(
    client: httpx.AsyncClient, editor: Account, stored: dict[str, Any]
) -> None:
    last_modified = (await client.head(stored["content_url"], headers=editor.headers)).headers[
        "last-modified"
    ]
    response = await client.get(
        stored["content_url"], headers={**editor.headers, "If-Modified-Since": last_modified}
    )
    assert response.status_code == 304
    older = await client.get(
        stored["content_url"],
        headers={**editor.headers, "If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
    )
    assert older.status_code == 200


async def test_if_range_honoured(
    client: httpx.AsyncClient, editor: Account, stored: dict[str, Any]
) -> None:
    etag = f'"{stored["sha256"]}"'
    matching = await client.get(
        stored["content_url"], headers={**editor.headers, "Range": "bytes=0-9", "If-Range": etag}
    )
    assert matching.status_code == 206
    assert matching.content == DATA[:10]
    stale = await client.get(
        stored["content_url"], headers={**editor.headers, "Range": "bytes=0-9", "If-Range": '"old"'}
    )
    assert stale.status_code == 200
    assert stale.content == DATA


async def test_non_ascii_name_gets_rfc5987_filename(
    client: httpx.AsyncClient, editor: Account
) -> None:
    stored = await uploaded(
        client, editor, filename="résumé 東京.pdf", content_type="application/pdf"
    )
    response = await client.get(stored["content_url"], headers=editor.headers)
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="r_sum_ __.pdf"; ')
    encoded = disposition.split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded) == "résumé 東京.pdf"


async def test_inline_only_for_types_that_cannot_run_script(
    client: httpx.AsyncClient, editor: Account
) -> None:
    image = await uploaded(client, editor, filename="a.png", content_type="image/png")
    page = await uploaded(client, editor, filename="a.html", content_type="text/html")
    svg = await uploaded(client, editor, filename="a.svg", content_type="image/svg+xml")
    for item, expected in ((image, "inline"), (page, "attachment"), (svg, "attachment")):
        response = await client.get(
            f"{item['content_url']}?disposition=inline", headers=editor.headers
        )
        assert response.headers["content-disposition"].split(";")[0] == expected


async def test_token_in_query_works_for_content(
    client: httpx.AsyncClient, editor: Account, stored: dict[str, Any]
) -> None:
    response = await client.get(f"{stored['content_url']}?access_token={editor.token}")
    assert response.status_code == 200
    assert response.content == DATA
    anonymous = await client.get(stored["content_url"])
    assert anonymous.status_code == 401


async def test_unknown_file_is_404(client: httpx.AsyncClient, editor: Account) -> None:
    response = await client.get(
        "/api/v1/files/00000000-0000-0000-0000-000000000000/content", headers=editor.headers
    )
    assert response.status_code == 404
    assert response.json()["code"] == "file_not_found"


async def test_no_database_connection_is_held_while_streaming(
    app: FastAPI, editor: Account, stored: dict[str, Any]
) -> None:
    """Call the app as the server would and look at the pool as each body chunk leaves."""
    context: AppContext = app.state.context
    pool = context.db.engine.pool
    assert isinstance(pool, QueuePool)
    checked_out_during_body: list[int] = []
    body = bytearray()

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            checked_out_during_body.append(pool.checkedout())
            body.extend(message.get("body", b""))

    scope = http_scope("GET", stored["content_url"], editor.token)
    await app(scope, receive, send)
    assert bytes(body) == DATA
    assert checked_out_during_body
    assert set(checked_out_during_body) == {0}
