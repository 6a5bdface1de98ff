"""CORS: only the configured origins, the headers a browser upload needs, never `*` with
credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from filesvc.config import Settings
from tests.conftest import client_for, running_app

ALLOWED = "https://app.example.com"


@pytest.fixture
async def cors_client(
    settings: Settings, cheap_password_hashing: None
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings.model_copy(update={"cors_origins": [ALLOWED]})
    async with running_app(settings) as app, client_for(app) as client:
        yield client


def preflight(origin: str, method: str, headers: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


async def test_preflight_of_a_browser_upload(cors_client: httpx.AsyncClient) -> None:
    wanted = "authorization, content-type, x-transfer-id, x-checksum-sha256, content-digest"
    response = await cors_client.options(
        "/api/v1/files/raw/a.txt", headers=preflight(ALLOWED, "PUT", wanted)
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert set(wanted.split(", ")) <= allowed
    assert "PUT" in response.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in response.headers


async def test_responses_expose_what_clients_read(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.get("/healthz", headers={"Origin": ALLOWED})
    assert response.headers["access-control-allow-origin"] == ALLOWED
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"etag", "content-range", "content-disposition", "x-request-id", "location"} <= exposed
    assert "access-control-allow-credentials" not in response.headers


async def test_other_origins_get_nothing(cors_client: httpx.AsyncClient) -> None:
    simple = await cors_client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers
    response = await cors_client.options(
        "/api/v1/files", headers=preflight("https://evil.example", "POST", "authorization")
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_no_cors_headers_without_configured_origins(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"Origin": ALLOWED})
    assert "access-control-allow-origin" not in response.headers


async def test_a_wildcard_origin_never_comes_with_credentials(
    settings: Settings, cheap_password_hashing: None
) -> None:
    settings = settings.model_copy(update={"cors_origins": ["*"]})
    async with running_app(settings) as app, client_for(app) as client:
        response = await client.get("/healthz", headers={"Origin": ALLOWED, "Cookie": "a=b"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers
