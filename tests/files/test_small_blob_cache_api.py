"""Small files are served from memory once downloaded, and the row still decides: who may
read, which content, whether the file exists. Both stacks (local disk, S3)."""

from __future__ import annotations

import os

import httpx
from fastapi import FastAPI

from filesvc.config import Settings
from filesvc.deps import AppContext
from filesvc.files.models import File
from tests.conftest import ADMIN_PASSWORD, Account, client_for, login, running_app
from tests.files.helpers import uploaded

SMALL = os.urandom(4096)


async def remove_blob(app: FastAPI, file_id: str) -> None:
    """Take the bytes away behind the service's back: only a copy in memory can answer."""
    context: AppContext = app.state.context
    file = await context.db.point_reads.get(File, file_id)
    assert file is not None
    await context.storage.delete(file.storage_key)


async def test_a_small_file_once_downloaded_is_served_from_memory(
    app: FastAPI, client: httpx.AsyncClient, editor: Account
) -> None:
    file = await uploaded(client, editor, data=SMALL, filename="avatar.png")
    url = f"/api/v1/files/{file['id']}/content"
    first = await client.get(url, headers=editor.headers)
    assert first.status_code == 200
    assert first.content == SMALL

    await remove_blob(app, file["id"])

    again = await client.get(url, headers=editor.headers)
    assert again.status_code == 200
    assert again.content == SMALL
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["content-length"] == str(len(SMALL))
    head = await client.head(url, headers=editor.headers)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(SMALL))


async def test_a_cached_file_still_obeys_its_row(
    client: httpx.AsyncClient, editor: Account, viewer: Account
) -> None:
    file = await uploaded(client, editor, data=SMALL, fields={"visibility": "internal"})
    url = f"/api/v1/files/{file['id']}"
    assert (await client.get(f"{url}/content", headers=viewer.headers)).content == SMALL

    hidden = await client.patch(url, json={"visibility": "private"}, headers=editor.headers)
    assert hidden.status_code == 200
    refused = await client.get(f"{url}/content", headers=viewer.headers)
    assert refused.status_code == 404

    replaced = await client.put(f"{url}/content", content=b"new bytes", headers=editor.headers)
    assert replaced.status_code == 200
    fresh = await client.get(f"{url}/content", headers=editor.headers)
    assert fresh.content == b"new bytes"

    assert (await client.delete(url, headers=editor.headers)).status_code == 204
    gone = await client.get(f"{url}/content", headers=editor.headers)
    assert gone.status_code == 404


async def test_ranges_and_larger_files_are_read_from_storage(
    app: FastAPI, client: httpx.AsyncClient, editor: Account
) -> None:
    limit = app.state.settings.small_file_cache_max_file_bytes
    big = os.urandom(limit + 1)
    file = await uploaded(client, editor, data=big)
    url = f"/api/v1/files/{file['id']}/content"
    assert (await client.get(url, headers=editor.headers)).content == big

    await remove_blob(app, file["id"])

    missing = await client.get(url, headers=editor.headers)
    assert missing.status_code == 500
    assert missing.json()["code"] == "blob_missing"


async def test_no_copies_when_the_cache_is_off(
    settings: Settings, cheap_password_hashing: None
) -> None:
    off = settings.model_copy(update={"small_file_cache_bytes": 0})
    async with running_app(off) as app, client_for(app) as client:
        headers = {"Authorization": f"Bearer {await login(client, 'admin', ADMIN_PASSWORD)}"}
        done = await client.post("/api/v1/files", files={"file": ("a.bin", SMALL)}, headers=headers)
        assert done.status_code == 201
        url = f"/api/v1/files/{done.json()['id']}/content"
        assert (await client.get(url, headers=headers)).content == SMALL

        await remove_blob(app, done.json()["id"])

        missing = await client.get(url, headers=headers)
        assert missing.status_code == 500
        assert missing.json()["code"] == "blob_missing"
