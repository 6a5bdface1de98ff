from __future__ import annotations

import base64
import hashlib

import httpx

from tests.conftest import Account

UPLOADS = "/api/v1/uploads"
TUS = {"Tus-Resumable": "1.0.0"}
CHUNK_TYPE = {"Content-Type": "application/offset+octet-stream"}


def metadata(**pairs: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


def checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


async def create(
    client: httpx.AsyncClient,
    account: Account,
    length: int | None,
    *,
    headers: dict[str, str] | None = None,
    meta: dict[str, str] | None = None,
) -> httpx.Response:
    sizing = {"Upload-Length": str(length)} if length is not None else {"Upload-Defer-Length": "1"}
    extra = {"Upload-Metadata": metadata(**meta)} if meta else {}
    return await client.post(
        UPLOADS, headers={**account.headers, **TUS, **sizing, **extra, **(headers or {})}
    )


async def created(
    client: httpx.AsyncClient, account: Account, length: int | None, **meta: str
) -> str:
    response = await create(client, account, length, meta=meta)
    assert response.status_code == 201, response.text
    return response.headers["location"]


async def patch(
    client: httpx.AsyncClient,
    account: Account,
    url: str,
    offset: int,
    data: bytes,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.patch(
        url,
        content=data,
        headers={
            **account.headers,
            **TUS,
            **CHUNK_TYPE,
            "Upload-Offset": str(offset),
            **(headers or {}),
        },
    )


async def offset_of(client: httpx.AsyncClient, account: Account, url: str) -> int:
    response = await client.head(url, headers={**account.headers, **TUS})
    assert response.status_code == 200, response.text
    return int(response.headers["upload-offset"])
