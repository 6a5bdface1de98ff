"""The page at `/` and its static files come from the package, with a strict CSP."""

from __future__ import annotations

import httpx


async def test_the_page_and_its_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/app.css"):
        assert asset in page.text
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert response.content
    # The page drives its bars from the transfer's events, not the browser's counter.
    script = (await client.get("/static/app.js")).text
    assert "EventSource" in script
    assert "X-Transfer-Id" in script
    assert "upload.onprogress" not in script
    assert (await client.get("/static/missing.js")).status_code == 404
