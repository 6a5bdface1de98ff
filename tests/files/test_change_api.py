from __future__ import annotations

import httpx

from filesvc.config import Settings
from tests.conftest import Account, blob_files, make_account
from tests.files.helpers import file_ids, uploaded


async def test_read_file_metadata(
    client: httpx.AsyncClient, editor: Account, viewer: Account
) -> None:
    created = await uploaded(client, editor, fields={"visibility": "internal"})
    response = await client.get(f"/api/v1/files/{created['id']}", headers=viewer.headers)
    assert response.status_code == 200
    assert response.json() == created


async def test_owner_renames_and_updates_metadata(
    client: httpx.AsyncClient, editor: Account
) -> None:
    created = await uploaded(client, editor, fields={"metadata": '{"a": 1, "b": 2}'})
    response = await client.patch(
        f"/api/v1/files/{created['id']}",
        json={"name": "renamed.txt", "metadata": {"c": 3}, "visibility": "internal"},
        headers=editor.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["metadata"], body["visibility"]) == (
        "renamed.txt",
        {"c": 3},
        "internal",
    )
    assert body["updated_at"] >= created["updated_at"]
    again = await client.get(f"/api/v1/files/{created['id']}", headers=editor.headers)
    assert again.json()["name"] == "renamed.txt"
    download = await client.get(created["content_url"], headers=editor.headers)
    assert 'filename="renamed.txt"' in download.headers["content-disposition"]


async def test_rename_cleans_control_characters(client: httpx.AsyncClient, editor: Account) -> None:
    created = await uploaded(client, editor)
    response = await client.patch(
        f"/api/v1/files/{created['id']}", json={"name": "a\r\nb\x00.txt"}, headers=editor.headers
    )
    assert response.json()["name"] == "ab.txt"


async def test_invalid_patch_is_422(client: httpx.AsyncClient, editor: Account) -> None:
    created = await uploaded(client, editor)
    for body in ({"name": ""}, {"visibility": "secret"}, {"metadata": [1]}, {"size": 1}):
        response = await client.patch(
            f"/api/v1/files/{created['id']}", json=body, headers=editor.headers
        )
        assert response.status_code == 422, body
        assert response.json()["code"] == "validation_error"


async def test_only_owner_or_admin_may_change(
    client: httpx.AsyncClient, admin: Account, editor: Account, viewer: Account
) -> None:
    # Internal: they may read it, so being refused a change is 403, not 404.
    created = await uploaded(client, editor, fields={"visibility": "internal"})
    other_editor = await make_account(client, admin, "other", "editor")
    url = f"/api/v1/files/{created['id']}"
    for account in (other_editor, viewer):
        patch = await client.patch(url, json={"name": "x"}, headers=account.headers)
        assert patch.status_code == 403
        assert patch.json()["code"] == "permission_denied"
        delete = await client.delete(url, headers=account.headers)
        assert delete.status_code == 403
        replace = await client.put(f"{url}/content", content=b"x", headers=account.headers)
        assert replace.status_code == 403
    by_admin = await client.patch(url, json={"name": "by-admin"}, headers=admin.headers)
    assert by_admin.status_code == 200
    assert by_admin.json()["owner_id"] == editor.id


async def test_delete_removes_row_and_blob(
    client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    created = await uploaded(client, editor)
    assert len(blob_files(settings)) == 1
    response = await client.delete(f"/api/v1/files/{created['id']}", headers=editor.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert await file_ids(client, editor) == []
    assert blob_files(settings) == []
    gone = await client.get(f"/api/v1/files/{created['id']}", headers=editor.headers)
    assert gone.status_code == 404
    assert gone.json()["code"] == "file_not_found"
    content = await client.get(created["content_url"], headers=editor.headers)
    assert content.status_code == 404


async def test_admin_may_delete_any_file(
    client: httpx.AsyncClient, editor: Account, admin: Account
) -> None:
    created = await uploaded(client, editor)
    response = await client.delete(f"/api/v1/files/{created['id']}", headers=admin.headers)
    assert response.status_code == 204


async def test_patching_visibility_changes_who_may_read(
    client: httpx.AsyncClient, editor: Account, viewer: Account
) -> None:
    created = await uploaded(client, editor, fields={"visibility": "private"})
    meta_url = f"/api/v1/files/{created['id']}"
    content_url = created["content_url"]

    async def visible_to_viewer() -> tuple[int, bool]:
        meta = await client.get(meta_url, headers=viewer.headers)
        return meta.status_code, created["id"] in await file_ids(client, viewer)

    async def set_visibility(visibility: str) -> None:
        response = await client.patch(
            meta_url, json={"visibility": visibility}, headers=editor.headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["visibility"] == visibility

    assert await visible_to_viewer() == (404, False)
    assert (await client.get(content_url)).status_code == 401

    await set_visibility("public")
    anonymous = await client.get(content_url)
    assert anonymous.status_code == 200
    assert anonymous.content == b"hello world\n"
    assert await visible_to_viewer() == (200, True)

    await set_visibility("internal")
    assert (await client.get(content_url)).status_code == 401
    assert await visible_to_viewer() == (200, True)

    await set_visibility("private")
    assert await visible_to_viewer() == (404, False)
    assert (await client.get(content_url, headers=viewer.headers)).status_code == 404
    anonymous = await client.get(content_url)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
