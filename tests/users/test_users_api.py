from __future__ import annotations

import httpx

from tests.conftest import Account, make_account
from tests.files.helpers import uploaded


async def test_admin_creates_and_lists_users(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.post(
        "/api/v1/users",
        json={"username": "alice", "password": "alice-password", "role": "editor"},
        headers=admin.headers,
    )
    assert response.status_code == 201
    assert response.json()["role"] == "editor"
    listing = await client.get("/api/v1/users", headers=admin.headers)
    assert [u["username"] for u in listing.json()] == ["admin", "alice"]


async def test_duplicate_username_is_409(client: httpx.AsyncClient, admin: Account) -> None:
    body = {"username": "bob", "password": "bob-password", "role": "viewer"}
    assert (await client.post("/api/v1/users", json=body, headers=admin.headers)).status_code == 201
    again = await client.post("/api/v1/users", json=body, headers=admin.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "username_taken"


async def test_validation_errors_do_not_echo_passwords(
    client: httpx.AsyncClient, admin: Account
) -> None:
    response = await client.post(
        "/api/v1/users",
        json={"username": "carol", "password": "pw7!", "role": "viewer"},
        headers=admin.headers,
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert "pw7!" not in response.text


async def test_only_admins_manage_users(
    client: httpx.AsyncClient, admin: Account, editor: Account
) -> None:
    for method, url in (
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("PATCH", f"/api/v1/users/{admin.id}"),
        ("DELETE", f"/api/v1/users/{admin.id}"),
    ):
        response = await client.request(method, url, json={}, headers=editor.headers)
        assert response.status_code == 403, (method, url)
        assert response.json()["code"] == "permission_denied"


async def test_role_change_takes_effect(client: httpx.AsyncClient, admin: Account) -> None:
    account = await make_account(client, admin, "dave", "viewer")
    upload = {"file": ("a.txt", b"a", "text/plain")}
    denied = await client.post("/api/v1/files", files=upload, headers=account.headers)
    assert denied.status_code == 403
    await client.patch(
        f"/api/v1/users/{account.id}", json={"role": "editor"}, headers=admin.headers
    )
    allowed = await client.post("/api/v1/files", files=upload, headers=account.headers)
    assert allowed.status_code == 201


async def test_admin_cannot_lock_themselves_out(client: httpx.AsyncClient, admin: Account) -> None:
    for change in ({"role": "viewer"}, {"disabled": True}):
        response = await client.patch(
            f"/api/v1/users/{admin.id}", json=change, headers=admin.headers
        )
        assert response.status_code == 409
        assert response.json()["code"] == "cannot_change_self"
    delete = await client.delete(f"/api/v1/users/{admin.id}", headers=admin.headers)
    assert delete.status_code == 409


async def test_user_with_files_cannot_be_deleted(
    client: httpx.AsyncClient, admin: Account, editor: Account
) -> None:
    await uploaded(client, editor)
    response = await client.delete(f"/api/v1/users/{editor.id}", headers=admin.headers)
    assert response.status_code == 409
    assert response.json()["code"] == "user_owns_files"


async def test_unknown_user_is_404(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.patch("/api/v1/users/nope", json={}, headers=admin.headers)
    assert response.status_code == 404
    assert response.json()["code"] == "user_not_found"
