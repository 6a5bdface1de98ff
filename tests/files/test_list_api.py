from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Account
from tests.files.helpers import uploaded


@pytest.fixture
async def catalogue(client: httpx.AsyncClient, editor: Account) -> list[dict[str, Any]]:
    specs = [
        ("beta.png", b"x" * 30, "image/png"),
        ("alpha.jpg", b"x" * 10, "image/jpeg"),
        ("notes_100%.txt", b"x" * 20, "text/plain"),
        ("gamma.png", b"x" * 50, "image/png"),
        ("Delta.pdf", b"x" * 40, "application/pdf"),
    ]
    return [
        await uploaded(client, editor, filename=name, data=data, content_type=ctype)
        for name, data, ctype in specs
    ]


async def _all_pages(client: httpx.AsyncClient, account: Account, query: str) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        url = f"/api/v1/files?{query}" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(url, headers=account.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item["name"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def test_default_order_is_newest_first(
    client: httpx.AsyncClient, editor: Account, catalogue: list[dict[str, Any]]
) -> None:
    response = await client.get("/api/v1/files", headers=editor.headers)
    body = response.json()
    assert [item["id"] for item in body["items"]] == [f["id"] for f in reversed(catalogue)]
    assert body["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("sort=size&order=asc", [10, 20, 30, 40, 50]),
        ("sort=size&order=desc", [50, 40, 30, 20, 10]),
    ],
)
async def test_cursor_pages_cover_everything_once(
    client: httpx.AsyncClient,
    editor: Account,
    catalogue: list[dict[str, Any]],
    query: str,
    expected: list[int],
) -> None:
    pages = await _all_pages(client, editor, f"{query}&limit=2")
    assert [len(page) for page in pages] == [2, 2, 1]
    names = [name for page in pages for name in page]
    sizes = {f["name"]: f["size"] for f in catalogue}
    assert [sizes[name] for name in names] == expected


async def test_sort_by_name_pages(
    client: httpx.AsyncClient, editor: Account, catalogue: list[dict[str, Any]]
) -> None:
    pages = await _all_pages(client, editor, "sort=name&order=asc&limit=3")
    names = [name for page in pages for name in page]
    assert sorted(names) == sorted(f["name"] for f in catalogue)
    assert len(names) == len(set(names)) == 5
    reverse = [
        n for p in await _all_pages(client, editor, "sort=name&order=desc&limit=3") for n in p
    ]
    assert reverse == list(reversed(names))


async def test_created_at_pages_with_equal_timestamps(
    client: httpx.AsyncClient, editor: Account, catalogue: list[dict[str, Any]]
) -> None:
    pages = await _all_pages(client, editor, "limit=1")
    assert len(pages) == 5
    assert [p[0] for p in pages] == [f["name"] for f in reversed(catalogue)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=ALPH", {"alpha.jpg"}),
        ("q=a", {"beta.png", "alpha.jpg", "gamma.png", "Delta.pdf"}),
        ("q=100%25", {"notes_100%.txt"}),  # % is literal, not a wildcard
        ("q=_", {"notes_100%.txt"}),
        ("content_type=image/", {"beta.png", "alpha.jpg", "gamma.png"}),
        ("content_type=image/png", {"beta.png", "gamma.png"}),
        ("content_type=image", set()),
        (
            "visibility=private",
            {"beta.png", "alpha.jpg", "notes_100%.txt", "gamma.png", "Delta.pdf"},
        ),
        ("visibility=public", set()),
    ],
)
async def test_filters(
    client: httpx.AsyncClient,
    editor: Account,
    catalogue: list[dict[str, Any]],
    query: str,
    expected: set[str],
) -> None:
    response = await client.get(f"/api/v1/files?{query}", headers=editor.headers)
    assert response.status_code == 200, response.text
    assert {item["name"] for item in response.json()["items"]} == expected


async def test_owner_filter(
    client: httpx.AsyncClient, editor: Account, admin: Account, catalogue: list[dict[str, Any]]
) -> None:
    mine = await uploaded(client, admin, filename="admins.txt", fields={"visibility": "internal"})
    await uploaded(client, admin, filename="admins-private.txt")
    response = await client.get(f"/api/v1/files?owner_id={admin.id}", headers=editor.headers)
    assert [item["id"] for item in response.json()["items"]] == [mine["id"]]


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "sort=owner", "order=up", "visibility=secret"]
)
async def test_invalid_parameters_are_422(
    client: httpx.AsyncClient, editor: Account, query: str
) -> None:
    response = await client.get(f"/api/v1/files?{query}", headers=editor.headers)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert isinstance(response.json()["detail"], list)


async def test_cursor_from_another_sort_is_rejected(
    client: httpx.AsyncClient, editor: Account, catalogue: list[dict[str, Any]]
) -> None:
    first = await client.get("/api/v1/files?sort=size&limit=1", headers=editor.headers)
    cursor = first.json()["next_cursor"]
    response = await client.get(f"/api/v1/files?sort=name&cursor={cursor}", headers=editor.headers)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"
    garbage = await client.get("/api/v1/files?cursor=!!!notbase64", headers=editor.headers)
    assert garbage.status_code == 400
    assert garbage.json()["code"] == "invalid_cursor"


async def test_listing_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/files")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
