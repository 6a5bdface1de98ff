"""Bad tokens are 401 everywhere, and the request they carry changes nothing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from filesvc.config import Settings
from tests.conftest import Account, blob_files, login
from tests.files.helpers import file_ids, uploaded


def _claims(account: Account, **changes: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": account.id,
        "ver": 0,
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    return claims | changes


def _secret(settings: Settings) -> str:
    assert settings.secret_key is not None
    return settings.secret_key.get_secret_value()


def _tampered_payload(token: str, **changes: object) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    new = base64.urlsafe_b64encode(json.dumps(claims | changes).encode()).rstrip(b"=").decode()
    return f"{header}.{new}.{signature}"


def bad_tokens(editor: Account, admin: Account, settings: Settings) -> dict[str, str]:
    secret = _secret(settings)
    past = datetime.now(UTC) - timedelta(hours=1)
    return {
        "alg none": jwt.encode(_claims(editor), None, algorithm="none"),
        "tampered payload": _tampered_payload(editor.token, sub=admin.id),
        "expired": jwt.encode(_claims(editor, iat=past, exp=past), secret, algorithm="HS256"),
        "another key": jwt.encode(_claims(editor), "k" * 48, algorithm="HS256"),
        "wrong version": jwt.encode(_claims(editor, ver=1), secret, algorithm="HS256"),
        "truncated": editor.token[:-3],
    }


async def test_bad_tokens_are_401_and_change_nothing(
    client: httpx.AsyncClient, admin: Account, editor: Account, settings: Settings
) -> None:
    file = await uploaded(client, editor, data=b"kept")
    before = (await file_ids(client, admin), blob_files(settings))
    for what, token in bad_tokens(editor, admin, settings).items():
        headers = {"Authorization": f"Bearer {token}"}
        attempts = [
            await client.get("/api/v1/users/me", headers=headers),
            await client.post("/api/v1/files", files={"file": ("x", b"new")}, headers=headers),
            await client.put("/api/v1/files/raw/x", content=b"new", headers=headers),
            await client.delete(f"/api/v1/files/{file['id']}", headers=headers),
            await client.get(f"/api/v1/files/{file['id']}/content?access_token={token}"),
        ]
        for response in attempts:
            assert response.status_code == 401, (what, response.request.url)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["code"] == "not_authenticated"
    assert (await file_ids(client, admin), blob_files(settings)) == before


async def test_viewer_upload_is_403_and_stores_nothing(
    client: httpx.AsyncClient, admin: Account, viewer: Account, settings: Settings
) -> None:
    for response in (
        await client.post("/api/v1/files", files={"file": ("x", b"x")}, headers=viewer.headers),
        await client.put("/api/v1/files/raw/x", content=b"x", headers=viewer.headers),
    ):
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
    assert await file_ids(client, admin) == []
    assert blob_files(settings) == []


async def test_password_change_voids_earlier_tokens(
    client: httpx.AsyncClient, admin: Account, editor: Account
) -> None:
    second_session = await login(client, editor.username, editor.password)
    changed = await client.patch(
        f"/api/v1/users/{editor.id}", json={"password": "a-new-password"}, headers=admin.headers
    )
    assert changed.status_code == 200
    for token in (editor.token, second_session):
        response = await client.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    fresh = await login(client, editor.username, "a-new-password")
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {fresh}"})
    assert me.status_code == 200
    # A role change is not a credential change: the admin's own token keeps working.
    assert (await client.get("/api/v1/users/me", headers=admin.headers)).status_code == 200


@pytest.mark.parametrize("change", [{"disabled": True}, "delete"])
async def test_disabled_or_deleted_users_tokens_fail_on_file_routes(
    client: httpx.AsyncClient, admin: Account, viewer: Account, change: object
) -> None:
    file = await uploaded(client, admin, fields={"visibility": "internal"})
    url = f"/api/v1/files/{file['id']}/content?access_token={viewer.token}"
    assert (await client.get(url)).status_code == 200
    if change == "delete":
        response = await client.delete(f"/api/v1/users/{viewer.id}", headers=admin.headers)
    else:
        response = await client.patch(
            f"/api/v1/users/{viewer.id}", json=change, headers=admin.headers
        )
    assert response.is_success
    assert (await client.get(url)).status_code == 401
    listing = await client.get("/api/v1/files", headers=viewer.headers)
    assert listing.status_code == 401


async def test_query_token_for_a_file_you_cannot_read_is_404(
    client: httpx.AsyncClient, admin: Account, viewer: Account
) -> None:
    file = await uploaded(client, admin)  # private
    response = await client.get(f"/api/v1/files/{file['id']}/content?access_token={viewer.token}")
    assert response.status_code == 404
    assert response.json()["code"] == "file_not_found"
