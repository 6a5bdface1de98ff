from __future__ import annotations

import hashlib
from typing import Any

import httpx
from starlette.types import Scope

from tests.conftest import Account

# Headers that differ between any two answers.
PER_ANSWER = {"date", "x-request-id", "x-process-time"}


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


def http_scope(method: str, path: str, token: str, *headers: tuple[bytes, bytes]) -> Scope:
    """An ASGI HTTP scope, for tests that drive the app as a server would."""
    return {
        "type": "http",
        # 2.4: FileResponse then leaves receive() alone while it sends.
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("testserver", 80),
        "client": ("t", 1),
        "headers": [(b"authorization", f"Bearer {token}".encode()), *headers],
    }
