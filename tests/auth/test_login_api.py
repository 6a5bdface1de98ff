from __future__ import annotations

import httpx
import jwt

from tests.conftest import ADMIN_PASSWORD, Account, login


async def test_token_for_valid_credentials(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "HS256"


async def test_wrong_password_and_unknown_user_look_the_same(client: httpx.AsyncClient) -> None:
    wrong = await client.post("/api/v1/auth/token", data={"username": "admin", "password": "nope"})
    unknown = await client.post(
        "/api/v1/auth/token", data={"username": "ghost", "password": "nope"}
    )
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {
            "detail": "Incorrect username or password.",
            "code": "invalid_credentials",
        }


async def test_me(client: httpx.AsyncClient, editor: Account) -> None:
    response = await client.get("/api/v1/users/me", headers=editor.headers)
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["username"], body["role"]) == (editor.id, "editor", "editor")
    assert "password_hash" not in body


async def test_bad_tokens_are_401(client: httpx.AsyncClient, editor: Account) -> None:
    forged = jwt.encode(
        {"sub": editor.id, "exp": 9999999999, "iat": 0},
        "a-wrong-secret-that-is-long-enough-for-hs256",
    )
    for token in ("garbage", forged, editor.token[:-2]):
        response = await client.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["code"] == "not_authenticated"


async def test_disabled_user_is_locked_out_at_once(
    client: httpx.AsyncClient, admin: Account, editor: Account
) -> None:
    assert (await client.get("/api/v1/users/me", headers=editor.headers)).status_code == 200
    response = await client.patch(
        f"/api/v1/users/{editor.id}", json={"disabled": True}, headers=admin.headers
    )
    assert response.status_code == 200
    assert (await client.get("/api/v1/users/me", headers=editor.headers)).status_code == 401
    relogin = await client.post(
        "/api/v1/auth/token", data={"username": editor.username, "password": editor.password}
    )
    assert relogin.status_code == 401


async def test_deleted_user_is_locked_out_at_once(
    client: httpx.AsyncClient, admin: Account, viewer: Account
) -> None:
    response = await client.delete(f"/api/v1/users/{viewer.id}", headers=admin.headers)
    assert response.status_code == 204
    assert (await client.get("/api/v1/users/me", headers=viewer.headers)).status_code == 401


async def test_password_change(client: httpx.AsyncClient, admin: Account, editor: Account) -> None:
    response = await client.patch(
        f"/api/v1/users/{editor.id}", json={"password": "a-new-password"}, headers=admin.headers
    )
    assert response.status_code == 200
    assert await login(client, editor.username, "a-new-password")
    old = await client.post(
        "/api/v1/auth/token", data={"username": editor.username, "password": editor.password}
    )
    assert old.status_code == 401
