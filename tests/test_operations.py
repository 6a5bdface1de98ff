"""Health, readiness, middleware headers and the error shape for unknown routes."""

from __future__ import annotations

import logging

import httpx
import pytest

from filesvc.config import Settings
from tests.conftest import Account, break_storage
from tests.files.helpers import uploaded


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200


async def test_readyz_ok_then_storage_failure(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    assert (await client.get("/readyz")).status_code == 200
    break_storage(settings)
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["storage"]
    assert response.json()["code"] == "not_ready"


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith junk"})
    assert generated.headers["x-request-id"] != "bad id\twith junk"
    assert len(generated.headers["x-request-id"]) == 32
    assert float(generated.headers["x-process-time"]) >= 0


async def test_unknown_route_and_method_use_the_error_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/nothing")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found", "code": "not_found"}
    wrong_method = await client.delete("/healthz")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"
    assert wrong_method.headers["allow"] == "GET"


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        # Several routes share each of these paths: Allow names all their methods.
        ("/api/v1/users", "GET, POST"),
        ("/api/v1/users/some-id", "DELETE, PATCH"),
        ("/api/v1/files", "GET, POST"),
        ("/api/v1/files/some-id", "DELETE, GET, PATCH"),
        ("/api/v1/files/some-id/content", "GET, HEAD, PUT"),
        ("/api/v1/shared/some-token", "GET, HEAD"),
        # A concrete path wins over the template it also matches, as in OpenAPI.
        ("/api/v1/users/me", "GET"),
        ("/api/v1/files/batch", "POST"),
    ],
)
async def test_405_allow_names_every_method_of_the_path(
    client: httpx.AsyncClient, admin: Account, path: str, allow: str
) -> None:
    response = await client.request("OPTIONS", path, headers=admin.headers)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["code"] == "method_not_allowed"


async def test_access_log_leaves_out_query_strings(
    client: httpx.AsyncClient, editor: Account, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="filesvc.access"):
        await client.get(f"/api/v1/files?access_token={editor.token}", headers=editor.headers)
    lines = [r.getMessage() for r in caplog.records if r.name == "filesvc.access"]
    assert any('"GET /api/v1/files"' in line for line in lines)
    assert all(editor.token not in line for line in lines)


async def test_share_tokens_never_reach_the_log(
    client: httpx.AsyncClient, editor: Account, caplog: pytest.LogCaptureFixture
) -> None:
    file = await uploaded(client, editor)
    link = await client.post(f"/api/v1/files/{file['id']}/links", json={}, headers=editor.headers)
    url = link.json()["url"]
    token = url.rsplit("/", 1)[1]
    with caplog.at_level(logging.DEBUG):
        assert (await client.get(url)).status_code == 200
        assert (await client.get(url[:-2] + "xx")).status_code == 403
        # Mistyped links match no route (or redirect); their tokens stay out all the same.
        for mistyped in (url + "/", url + "/x", url.replace("/shared/", "//SHARED/")):
            assert (await client.get(mistyped)).status_code in (307, 404)
        await client.get(f"{file['content_url']}?access_token={editor.token}")
    # The server's own loggers (the test client logs its URLs too).
    server = ("filesvc", "uvicorn", "fastapi", "starlette")
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(server))
    assert '"GET /api/v1/shared/{token}" 200' in text
    assert '"GET /api/v1/shared/{token}" 403' in text
    assert token not in text
    assert token[:-2] not in text
    assert token.split(".")[1] not in text
    assert editor.token not in text
