from __future__ import annotations

import hashlib
from typing import Any

import httpx

from tests.conftest import Account


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def upload(
    client: httpx.AsyncClient,
    account: Account,
    data: bytes = b"hello world\n",
    filename: str = "hello.txt",
    content_type: str = "text/plain",
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        "/api/v1/files",
        files={"file": (filename, data, content_type)},
        data=fields or {},
        headers={**account.headers, **(headers or {})},
    )


async def uploaded(client: httpx.AsyncClient, account: Account, **kwargs: Any) -> dict[str, Any]:
    response = await upload(client, account, **kwargs)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def file_ids(client: httpx.AsyncClient, account: Account) -> list[str]:
    response = await client.get("/api/v1/files?limit=1000", headers=account.headers)
    assert response.status_code == 200
    return [item["id"] for item in response.json()["items"]]
