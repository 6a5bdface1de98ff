"""GET /metrics: what is counted, under which labels, and who may read it."""

from __future__ import annotations

import hashlib

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from filesvc.config import Settings
from tests.conftest import ADMIN_PASSWORD, Account, break_storage, client_for, login, running_app
from tests.files.helpers import upload, uploaded
from tests.scrape import samples, value


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_requests_are_counted_by_route_template_never_by_path(
    client: httpx.AsyncClient, editor: Account
) -> None:
    file = await uploaded(client, editor, filename="quarterly-secret-plan.txt")
    assert (await client.get(f"/api/v1/files/{file['id']}", headers=editor.headers)).is_success
    assert (await client.get("/api/v1/no/such/route-xyz")).status_code == 404
    text = await scrape(client)

    route = "/api/v1/files/{file_id}"
    assert value(text, "filesvc_http_requests_total", method="GET", route=route, status="200") == 1
    assert (
        value(
            text, "filesvc_http_requests_total", method="POST", route="/api/v1/files", status="201"
        )
        == 1
    )
    assert (
        value(text, "filesvc_http_requests_total", method="GET", route="unmatched", status="404")
        == 1
    )
    assert (
        value(text, "filesvc_http_request_duration_seconds_count", method="GET", route=route) == 1
    )
    # No label carries an id, a name or a raw path.
    for secret in (file["id"], "quarterly-secret-plan", editor.id, editor.username, "route-xyz"):
        assert secret not in text


async def test_bytes_in_and_out_are_counted(client: httpx.AsyncClient, editor: Account) -> None:
    before = await scrape(client)
    data = b"x" * 100_000
    file = await uploaded(client, editor, data=data)
    download = await client.get(file["content_url"], headers=editor.headers)
    assert download.content == data
    after = await scrape(client)
    received = value(after, "filesvc_http_received_bytes_total") - value(
        before, "filesvc_http_received_bytes_total"
    )
    sent = value(after, "filesvc_http_sent_bytes_total") - value(
        before, "filesvc_http_sent_bytes_total"
    )
    assert len(data) < received < len(data) + 2000  # the multipart framing on top
    # The download, the upload's JSON reply and the first scrape itself.
    sent_at_least = len(data) + len(before.encode())
    assert sent_at_least < sent < sent_at_least + 2000


async def test_uploads_are_counted_by_outcome(client: httpx.AsyncClient, editor: Account) -> None:
    await uploaded(client, editor)
    wrong = hashlib.sha256(b"something else").hexdigest()
    mismatch = await upload(client, editor, headers={"X-Checksum-SHA256": wrong})
    assert mismatch.status_code == 400
    bad_metadata = await upload(client, editor, fields={"metadata": "[1, 2]"})
    assert bad_metadata.status_code == 400
    text = await scrape(client)
    assert value(text, "filesvc_uploads_total", outcome="created") == 1
    assert value(text, "filesvc_uploads_total", outcome="checksum_mismatch") == 1
    # The metadata is checked after the bytes are in, when the row is made.
    assert value(text, "filesvc_uploads_total", outcome="invalid") == 1
    assert value(text, "filesvc_transfers_active", direction="upload") == 0


async def test_uploads_over_the_limit_are_counted_as_too_large(
    settings: Settings, cheap_password_hashing: None
) -> None:
    limited = settings.model_copy(update={"max_upload_bytes": 1000})
    async with running_app(limited) as app, client_for(app) as client:
        token = await login(client, "admin", ADMIN_PASSWORD)
        response = await client.put(
            "/api/v1/files/raw/big.bin",
            content=b"x" * 5000,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 413
        assert value(await scrape(client), "filesvc_uploads_total", outcome="too_large") == 1


async def test_storage_failures_are_counted_by_backend_and_operation(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    break_storage(settings)
    assert (await client.get("/readyz")).status_code == 503
    text = await scrape(client)
    assert (
        value(text, "filesvc_storage_errors_total", backend=settings.storage, operation="check")
        == 1
    )


async def test_readyz_says_shutting_down_once_draining(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    assert (await client.get("/readyz")).status_code == 200
    app.state.drain.draining = True
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "detail": "Not ready: shutting down.",
        "code": "shutting_down",
        "failed": ["shutting_down"],
    }


async def test_a_metrics_token_is_required_once_set(
    settings: Settings, cheap_password_hashing: None
) -> None:
    guarded = settings.model_copy(update={"metrics_token": SecretStr("scrape-me-" + "z" * 20)})
    async with running_app(guarded) as app, client_for(app) as client:
        missing = await client.get("/metrics")
        assert missing.status_code == 401
        assert missing.json()["code"] == "not_authenticated"
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert wrong.status_code == 401
        right = await client.get(
            "/metrics", headers={"Authorization": "Bearer scrape-me-" + "z" * 20}
        )
        assert right.status_code == 200
        assert samples(right.text)
