from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from filesvc.config import Settings
from filesvc.sharing.tokens import DOWNLOAD, ShareGrant, sign_grant
from tests.conftest import (
    ADMIN_PASSWORD,
    Account,
    client_for,
    login,
    make_account,
    running_app,
)
from tests.files.helpers import sha256, uploaded

DATA = bytes(range(256)) * 40
SEVEN_DAYS = 7 * 24 * 3600


async def make_link(
    client: httpx.AsyncClient, account: Account, file_id: str, body: Any = None
) -> httpx.Response:
    return await client.post(f"/api/v1/files/{file_id}/links", json=body, headers=account.headers)


async def link_url(client: httpx.AsyncClient, account: Account, file_id: str) -> str:
    response = await make_link(client, account, file_id, {"expires_in": 600})
    assert response.status_code == 201, response.text
    url: str = response.json()["url"]
    return url


def secret_of(settings: Settings) -> str:
    assert settings.secret_key is not None
    return settings.secret_key.get_secret_value()


async def test_link_downloads_without_a_token(client: httpx.AsyncClient, editor: Account) -> None:
    file = await uploaded(client, editor, data=DATA, filename="report.bin")
    before = time.time()
    response = await make_link(client, editor, file["id"], {"expires_in": 120})
    assert response.status_code == 201
    body = response.json()
    assert body["url"].startswith("/api/v1/shared/")  # a path: no FILESVC_PUBLIC_URL set
    expires_at = datetime.fromisoformat(body["expires_at"]).timestamp()
    assert before + 119 <= expires_at <= time.time() + 121

    shared = await client.get(body["url"])
    assert shared.status_code == 200
    assert sha256(shared.content) == file["sha256"]
    assert shared.headers["etag"] == f'"{file["sha256"]}"'
    assert shared.headers["content-disposition"].startswith('attachment; filename="report.bin"')
    assert shared.headers["referrer-policy"] == "no-referrer"
    assert shared.headers["x-content-type-options"] == "nosniff"


async def test_link_serves_ranges_head_and_conditions(
    client: httpx.AsyncClient, editor: Account
) -> None:
    file = await uploaded(client, editor, data=DATA)
    url = await link_url(client, editor, file["id"])
    ranged = await client.get(url, headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206
    assert ranged.content == DATA[10:20]
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(DATA)}"
    suffix = await client.get(url, headers={"Range": "bytes=-5"})
    assert suffix.content == DATA[-5:]
    unsatisfiable = await client.get(url, headers={"Range": f"bytes={len(DATA)}-"})
    assert unsatisfiable.status_code == 416
    head = await client.head(url)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(DATA))
    assert head.content == b""
    cached = await client.get(url, headers={"If-None-Match": f'"{file["sha256"]}"'})
    assert cached.status_code == 304


async def test_default_expiry_is_an_hour(client: httpx.AsyncClient, editor: Account) -> None:
    file = await uploaded(client, editor)
    bodies: list[dict[str, int] | None] = [None, {}]
    for body in bodies:
        response = await make_link(client, editor, file["id"], body)
        assert response.status_code == 201
        expires_at = datetime.fromisoformat(response.json()["expires_at"]).timestamp()
        assert abs(expires_at - (time.time() + 3600)) < 5


async def test_seven_days_is_the_longest(client: httpx.AsyncClient, editor: Account) -> None:
    file = await uploaded(client, editor)
    assert (await make_link(client, editor, file["id"], {"expires_in": SEVEN_DAYS})).is_success


@pytest.mark.parametrize(
    ("expires_in", "status"),
    [
        (0, 400),
        (-1, 400),
        (SEVEN_DAYS + 1, 400),
        (10**30, 400),
        ("abc", 422),
        ("3600", 422),
        (1.5, 422),
        (True, 422),
        (None, 422),
    ],
)
async def test_bad_expiry(
    client: httpx.AsyncClient, editor: Account, expires_in: object, status: int
) -> None:
    file = await uploaded(client, editor)
    response = await make_link(client, editor, file["id"], {"expires_in": expires_in})
    assert response.status_code == status, response.text
    assert response.json()["code"] == ("invalid_expiry" if status == 400 else "validation_error")


async def test_unknown_fields_are_refused(client: httpx.AsyncClient, editor: Account) -> None:
    file = await uploaded(client, editor)
    response = await make_link(client, editor, file["id"], {"expires_in": 60, "action": "delete"})
    assert response.status_code == 422


async def test_tampered_links_are_403(client: httpx.AsyncClient, editor: Account) -> None:
    file = await uploaded(client, editor, data=DATA)
    url = await link_url(client, editor, file["id"])
    other = await uploaded(client, editor, data=b"other")
    other_url = await link_url(client, editor, other["id"])
    token, other_token = url.rsplit("/", 1)[1], other_url.rsplit("/", 1)[1]
    payload, signature = token.split(".")
    candidates = [
        token[:-1] + ("A" if token[-1] != "A" else "B"),  # a changed character
        token[:5] + ("x" if token[5] != "x" else "y") + token[6:],
        payload + "." + other_token.split(".")[1],  # another link's signature
        other_token.split(".")[0] + "." + signature,  # another file's claims
        token + "A",
        "not-a-token",
    ]
    for candidate in candidates:
        response = await client.get(f"/api/v1/shared/{candidate}")
        assert response.status_code == 403, candidate
        assert response.json()["code"] == "invalid_link"


async def test_expired_link(client: httpx.AsyncClient, editor: Account, settings: Settings) -> None:
    file = await uploaded(client, editor)
    grant = ShareGrant(file["id"], DOWNLOAD, file["sha256"][:32], editor.id, int(time.time()) - 1)
    response = await client.get(f"/api/v1/shared/{sign_grant(grant, secret_of(settings))}")
    assert response.status_code == 403
    assert response.json()["code"] == "link_expired"


async def test_a_link_for_another_action_does_not_download(
    client: httpx.AsyncClient, editor: Account, settings: Settings
) -> None:
    file = await uploaded(client, editor)
    grant = ShareGrant(file["id"], "delete", file["sha256"][:32], editor.id, int(time.time()) + 600)
    token = sign_grant(grant, secret_of(settings))
    for method in ("GET", "HEAD"):
        response = await client.request(method, f"/api/v1/shared/{token}")
        assert response.status_code == 403, method
        if method == "GET":
            assert response.json()["code"] == "invalid_link"
    assert (await client.get(file["content_url"], headers=editor.headers)).status_code == 200


async def test_link_of_a_deleted_file_is_404(client: httpx.AsyncClient, editor: Account) -> None:
    file = await uploaded(client, editor)
    url = await link_url(client, editor, file["id"])
    assert (await client.delete(f"/api/v1/files/{file['id']}", headers=editor.headers)).is_success
    response = await client.get(url)
    assert response.status_code == 404
    assert response.json()["code"] == "file_not_found"


async def test_new_content_voids_older_links(client: httpx.AsyncClient, editor: Account) -> None:
    file = await uploaded(client, editor, data=b"first version")
    old_url = await link_url(client, editor, file["id"])
    replaced = await client.put(
        f"/api/v1/files/{file['id']}/content", content=b"second version", headers=editor.headers
    )
    assert replaced.status_code == 200
    response = await client.get(old_url)
    assert response.status_code == 403
    assert response.json()["code"] == "link_outdated"
    new_url = await link_url(client, editor, file["id"])
    assert (await client.get(new_url)).content == b"second version"


async def test_link_dies_with_its_makers_rights(
    client: httpx.AsyncClient, admin: Account, editor: Account
) -> None:
    file = await uploaded(client, editor)
    url = await link_url(client, editor, file["id"])
    disabled = await client.patch(
        f"/api/v1/users/{editor.id}", json={"disabled": True}, headers=admin.headers
    )
    assert disabled.status_code == 200
    response = await client.get(url)
    assert response.status_code == 403
    assert response.json()["code"] == "link_revoked"
    await client.patch(
        f"/api/v1/users/{editor.id}", json={"disabled": False}, headers=admin.headers
    )
    assert (await client.get(url)).status_code == 200
    # Demoted to viewer: no longer allowed to share, so neither is the link.
    await client.patch(f"/api/v1/users/{editor.id}", json={"role": "viewer"}, headers=admin.headers)
    assert (await client.get(url)).json()["code"] == "link_revoked"


async def test_admins_link_to_someone_elses_file(
    client: httpx.AsyncClient, admin: Account, editor: Account
) -> None:
    file = await uploaded(client, editor, data=b"editor's")
    url = await link_url(client, admin, file["id"])
    assert (await client.get(url)).content == b"editor's"


async def test_tokens_are_not_interchangeable(client: httpx.AsyncClient, editor: Account) -> None:
    file = await uploaded(client, editor)
    token = (await link_url(client, editor, file["id"])).rsplit("/", 1)[1]
    as_bearer = await client.get(
        f"/api/v1/files/{file['id']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert as_bearer.status_code == 401
    as_link = await client.get(f"/api/v1/shared/{editor.token}")
    assert as_link.status_code == 403


async def test_inline_only_for_types_that_cannot_run_script(
    client: httpx.AsyncClient, editor: Account
) -> None:
    text = await uploaded(client, editor, filename="a.txt", content_type="text/plain")
    html = await uploaded(client, editor, filename="a.html", content_type="text/html")
    for file, disposition in ((text, "inline"), (html, "attachment")):
        url = await link_url(client, editor, file["id"])
        response = await client.get(f"{url}?disposition=inline")
        assert response.headers["content-disposition"].startswith(disposition)


async def test_absolute_urls_come_from_the_public_url_not_the_host(
    settings: Settings, cheap_password_hashing: None
) -> None:
    settings = settings.model_copy(update={"public_url": "https://files.example.com/"})
    async with running_app(settings) as app, client_for(app) as client:
        admin = await _admin(client)
        file = await uploaded(client, admin)
        response = await client.post(
            f"/api/v1/files/{file['id']}/links",
            json={},
            headers={**admin.headers, "Host": "evil.example"},
        )
        url = response.json()["url"]
        assert url.startswith("https://files.example.com/api/v1/shared/")
        upload = await client.post(
            "/api/v1/files",
            files={"file": ("a.txt", b"a")},
            headers={**admin.headers, "Host": "evil.example"},
        )
        assert upload.headers["location"].startswith("https://files.example.com/api/v1/files/")
        path = url.removeprefix("https://files.example.com")
        assert (await client.get(path)).status_code == 200


async def _admin(client: httpx.AsyncClient) -> Account:
    token = await login(client, "admin", ADMIN_PASSWORD)
    me = (await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})).json()
    return Account(me["id"], "admin", ADMIN_PASSWORD, token)


async def test_viewer_cannot_share_a_readable_file(
    client: httpx.AsyncClient, admin: Account, editor: Account
) -> None:
    viewer = await make_account(client, admin, "vera", "viewer")
    file = await uploaded(client, editor, fields={"visibility": "internal"})
    response = await make_link(client, viewer, file["id"], {"expires_in": 60})
    assert response.status_code == 403
