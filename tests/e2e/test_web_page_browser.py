"""The page at `/` in headless Chromium: sign in, pick a 50 MiB file, watch its bar move
(driven by the transfer's SSE events), see the file appear in the list.

A screenshot of the page is kept as the test's artifact (its path is printed; it lands in
pytest's tmp_path, or in $FILESVC_TEST_ARTIFACTS when that is set).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .server import MiB, RunningServer, User, make_random_file

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e

PICKED_BYTES = 50 * MiB
# Chromium's own network throttling on the upload (DevTools' "custom" profile): the bytes
# cross loopback at about 25 MB/s, so the upload lasts about two seconds, as it would
# over a real network, and the bar has time to move.
UPLOAD_BYTES_PER_SECOND = 25_000_000
UI_TIMEOUT_MS = 30_000


@pytest.fixture
def page(chromium: Browser, server: RunningServer, tmp_path: Path) -> Iterator[Page]:
    """A phone-width page on the server, only ever talking to it; screenshot at the end."""
    from playwright.sync_api import Error as PlaywrightError

    context = chromium.new_context(viewport={"width": 420, "height": 900})
    context.route(lambda url: not url.startswith(server.base_url), lambda r: r.abort())
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
        assert not errors, errors
    finally:
        artifacts = Path(os.environ.get("FILESVC_TEST_ARTIFACTS", tmp_path))
        artifacts.mkdir(parents=True, exist_ok=True)
        screenshot = artifacts / "web-page.png"
        try:
            page.screenshot(path=screenshot, full_page=True)
            print(f"screenshot of /: {screenshot}")
        except PlaywrightError as exc:
            print(f"no screenshot of /: {exc}")
        context.close()


def throttle_uploads(page: Page) -> None:
    session = page.context.new_cdp_session(page)
    session.send("Network.enable")
    session.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": UPLOAD_BYTES_PER_SECOND,
        },
    )


def test_a_picked_file_uploads_with_a_live_progress_bar(
    page: Page, server: RunningServer, editor: User, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    picked = make_random_file(tmp_path / "picked-50MiB.bin", PICKED_BYTES)
    response = page.goto(server.base_url + "/")
    assert response is not None
    assert response.status == 200

    page.get_by_label("User name").fill(editor.username)
    page.get_by_label("Password").fill(editor.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#username")).to_have_text(editor.username)
    expect(page.locator("#live")).to_have_class("live on")  # /events is connected

    throttle_uploads(page)
    page.locator("#file-input").set_input_files(picked.path)

    listed = page.locator("#files .file", has_text=picked.path.name)
    expect(listed).to_have_count(1)
    expect(page.locator(".upload.complete")).to_have_count(1)
    seen: dict[str, Any] = page.evaluate("window.filesvcProgress")[picked.path.name]
    assert seen["state"] == "complete"
    assert seen["progress"] >= 3, seen
    intermediate = [p for p in seen["percents"] if 0 < p < 100]
    assert len(intermediate) >= 2, seen
    assert seen["percents"] == sorted(seen["percents"])
    assert seen["percents"][-1] == 100.0
    expect(page.locator(".upload progress")).to_have_attribute("value", "100")

    # The server has exactly the picked bytes, and the list links to them.
    with server.client(editor.token) as client:
        [item] = [
            f
            for f in client.get("/api/v1/files", params={"q": picked.path.name}).json()["items"]
            if f["name"] == picked.path.name
        ]
    assert item["sha256"] == picked.sha256
    href = listed.locator("a.download").get_attribute("href")
    assert href is not None
    assert href.startswith(item["content_url"])
