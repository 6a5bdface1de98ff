from __future__ import annotations

import io
import os
import zipfile

import httpx
import pytest

from filesvc.config import Settings
from tests.conftest import (
    ADMIN_PASSWORD,
    Account,
    client_for,
    login,
    make_account,
    running_app,
)
from tests.files.helpers import sha256, uploaded


def members(response: httpx.Response) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        assert {info.compress_type for info in archive.infolist()} <= {zipfile.ZIP_STORED}
        return {name: archive.read(name) for name in archive.namelist()}


async def test_archive_holds_every_file_byte_for_byte(
    client: httpx.AsyncClient, editor: Account
) -> None:
    big, empty = os.urandom(3 * 1024 * 1024 + 7), b""
    files = [
        await uploaded(client, editor, data=big, filename="photo.jpg"),
        await uploaded(client, editor, data=b"one", filename="notes.txt"),
        await uploaded(client, editor, data=b"two", filename="notes.txt"),
        await uploaded(client, editor, data=empty, filename="empty"),
    ]
    ids = [f["id"] for f in files] + [files[0]["id"]]  # a repeated id: each file once
    response = await client.get("/api/v1/archive", params={"id": ids}, headers=editor.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["content-disposition"] == 'attachment; filename="files.zip"'
    got = members(response)
    assert list(got) == ["photo.jpg", "notes.txt", "notes (1).txt", "empty"]
    assert sha256(got["photo.jpg"]) == sha256(big)
    assert (got["notes.txt"], got["notes (1).txt"], got["empty"]) == (b"one", b"two", b"")


async def test_names_never_become_paths(client: httpx.AsyncClient, editor: Account) -> None:
    file = await uploaded(client, editor, data=b"x", filename="../../etc/passwd")
    response = await client.get(
        "/api/v1/archive", params={"id": file["id"]}, headers=editor.headers
    )
    assert list(members(response)) == [".._.._etc_passwd"]


@pytest.mark.parametrize("count", [0, 3])
async def test_too_few_or_too_many_ids_are_400(
    settings: Settings, cheap_password_hashing: None, count: int
) -> None:
    settings = settings.model_copy(update={"max_archive_files": 2})
    async with running_app(settings) as app, client_for(app) as client:
        headers = {"Authorization": f"Bearer {await login(client, 'admin', ADMIN_PASSWORD)}"}
        ids = []
        for n in range(count):
            response = await client.post(
                "/api/v1/files", files={"file": (f"{n}.txt", b"x")}, headers=headers
            )
            ids.append(response.json()["id"])
        response = await client.get("/api/v1/archive", params={"id": ids}, headers=headers)
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_archive_request"
        # The same id many times is one file, within the limit.
        if ids:
            repeated = await client.get(
                "/api/v1/archive", params={"id": [ids[0]] * 5}, headers=headers
            )
            assert repeated.status_code == 200


async def test_one_unreadable_id_fails_the_whole_archive(
    client: httpx.AsyncClient, admin: Account, editor: Account
) -> None:
    other = await make_account(client, admin, "other", "editor")
    mine = await uploaded(client, editor, data=b"mine")
    theirs = await uploaded(client, other, data=b"theirs")  # private
    response = await client.get(
        "/api/v1/archive", params={"id": [mine["id"], theirs["id"]]}, headers=editor.headers
    )
    assert response.status_code == 404
    assert response.json()["code"] == "file_not_found"
    missing = await client.get(
        "/api/v1/archive", params={"id": [mine["id"], "no-such-id"]}, headers=editor.headers
    )
    assert missing.status_code == 404


async def test_anonymous_archives_public_files_only(
    client: httpx.AsyncClient, editor: Account
) -> None:
    public = await uploaded(client, editor, data=b"pub", fields={"visibility": "public"})
    internal = await uploaded(client, editor, data=b"int", fields={"visibility": "internal"})
    ok = await client.get("/api/v1/archive", params={"id": public["id"]})
    assert members(ok) == {"hello.txt": b"pub"}
    refused = await client.get("/api/v1/archive", params={"id": [public["id"], internal["id"]]})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"


async def test_token_in_the_query_for_browser_links(
    client: httpx.AsyncClient, editor: Account
) -> None:
    file = await uploaded(client, editor, data=b"via query")
    response = await client.get(
        "/api/v1/archive", params={"id": file["id"], "access_token": editor.token}
    )
    assert members(response) == {"hello.txt": b"via query"}
    bad = await client.get("/api/v1/archive", params={"id": file["id"], "access_token": "nope"})
    assert bad.status_code == 401
