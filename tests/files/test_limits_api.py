"""FILESVC_USER_QUOTA_BYTES and FILESVC_ALLOWED_CONTENT_TYPES, end to end through the API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from filesvc.config import Settings
from tests.conftest import Account, blob_files, client_for, running_app
from tests.files.helpers import file_ids, upload, uploaded

QUOTA = 1000


@pytest.fixture
async def limited(settings: Settings, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A second app on the same database and storage, with a quota and a type list."""
    changes = {"user_quota_bytes": QUOTA, "allowed_content_types": ["image/*", "text/plain"]}
    async with running_app(settings.model_copy(update=changes)) as app2, client_for(app2) as c:
        yield c


async def test_quota_counts_what_the_owner_already_stores(
    limited: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    await uploaded(limited, editor, data=b"x" * 600, filename="a.txt")
    over = await upload(limited, editor, data=b"y" * 401, filename="b.txt")
    assert over.status_code == 413
    assert over.json()["code"] == "quota_exceeded"
    fits = await upload(limited, editor, data=b"y" * 400, filename="c.txt")
    assert fits.status_code == 201
    assert len(await file_ids(limited, editor)) == 2
    assert len(blob_files(settings)) == 2


async def test_quota_is_per_owner(
    limited: httpx.AsyncClient, editor: Account, admin: Account
) -> None:
    await uploaded(limited, editor, data=b"x" * 900, filename="a.txt")
    response = await upload(limited, admin, data=b"x" * 900, filename="b.txt")
    assert response.status_code == 201


async def test_replacing_content_frees_the_old_size(
    limited: httpx.AsyncClient, editor: Account
) -> None:
    created = await uploaded(limited, editor, data=b"x" * 900, filename="a.txt")
    url = f"/api/v1/files/{created['id']}/content"
    replaced = await limited.put(
        url, content=b"y" * 1000, headers={**editor.headers, "Content-Type": "text/plain"}
    )
    assert replaced.status_code == 200, replaced.text
    too_big = await limited.put(
        url, content=b"z" * 1001, headers={**editor.headers, "Content-Type": "text/plain"}
    )
    assert too_big.status_code == 413
    assert too_big.json()["code"] == "quota_exceeded"


async def test_types_outside_the_list_are_415_and_kept_nowhere(
    limited: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    for filename, content_type in (("a.pdf", "application/pdf"), ("b.bin", "")):
        response = await upload(limited, editor, filename=filename, content_type=content_type)
        assert response.status_code == 415
        assert response.json()["code"] == "content_type_not_allowed"
    raw = await limited.put("/api/v1/files/raw/page.html", content=b"<p>", headers=editor.headers)
    assert raw.status_code == 415
    # A generic declared type is judged by the final name, here set by the `name` field.
    renamed = await upload(
        limited, editor, filename="x.png", content_type="", fields={"name": "x.exe"}
    )
    assert renamed.status_code == 415
    assert await file_ids(limited, editor) == []
    assert blob_files(settings) == []


async def test_listed_types_are_accepted(limited: httpx.AsyncClient, editor: Account) -> None:
    image = await upload(limited, editor, filename="a.png", content_type="image/png")
    text = await upload(limited, editor, filename="notes", content_type="text/plain")
    assert (image.status_code, text.status_code) == (201, 201)
