"""The page at `/` in headless Chromium: sign in, pick a 50 MiB file, watch its bar move
(driven by the transfer's SSE events), see the file appear in the list. Pick 8 files at
once (more than the browser's 6 connections per host would carry unqueued), drop files on
the drop zone, delete one with its button.

A screenshot of the page is kept as the test's artifact (its path is printed; it lands in
pytest's tmp_path, or in $FILESVC_TEST_ARTIFACTS when that is set).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .server import MiB, RunningServer, User, make_random_file

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Page

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


def throttle_uploads(page: Page, bytes_per_second: int = UPLOAD_BYTES_PER_SECOND) -> None:
    session = page.context.new_cdp_session(page)
    session.send("Network.enable")
    session.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": bytes_per_second,
        },
    )


def sign_in(page: Page, server: RunningServer, user: User) -> None:
    from playwright.sync_api import expect

    response = page.goto(server.base_url + "/")
    assert response is not None
    assert response.status == 200
    page.get_by_label("User name").fill(user.username)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#username")).to_have_text(user.username)
    expect(page.locator("#live")).to_have_class("live on")  # /events is connected


def listed_names(server: RunningServer, user: User, query: str) -> set[str]:
    with server.client(user.token) as client:
        response = client.get("/api/v1/files", params={"q": query, "limit": 200})
    assert response.status_code == 200, response.text
    return {f["name"] for f in response.json()["items"]}


def test_a_picked_file_uploads_with_a_live_progress_bar(
    page: Page, server: RunningServer, editor: User, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    picked = make_random_file(tmp_path / "picked-50MiB.bin", PICKED_BYTES)
    sign_in(page, server, editor)
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


MANY_FILES = 8
MANY_FILE_BYTES = 512 * 1024
# Slow enough that the queue is seen at work (8 x 512 KiB through one throttled page, 4.2 s).
MANY_BYTES_PER_SECOND = 1_000_000


def test_eight_picked_files_are_queued_and_all_upload(
    page: Page, server: RunningServer, editor: User, tmp_path: Path
) -> None:
    """Each running upload holds 2 connections (its event stream and its request) and
    /events 1: the page runs 2 uploads at once and queues the rest, so that 8 files do not
    starve Chromium's 6 connections per host (they all hung before the queue)."""
    from playwright.sync_api import expect

    picked = [
        make_random_file(tmp_path / f"many-{i}-of-{MANY_FILES}.bin", MANY_FILE_BYTES)
        for i in range(MANY_FILES)
    ]
    sign_in(page, server, editor)
    throttle_uploads(page, MANY_BYTES_PER_SECOND)
    page.locator("#file-input").set_input_files([f.path for f in picked])

    # One bar per file at once; those not started yet say so.
    expect(page.locator("#uploads .upload")).to_have_count(MANY_FILES)
    expect(page.locator("#uploads .upload .state", has_text="queued").first).to_be_visible()

    # All the bytes go through the one throttled page: about 4.2 s at the rate, which left
    # no margin under expect's default 5 s on a busy machine (a CI run reached 6 of 8).
    all_sent_ms = 1000 * MANY_FILES * MANY_FILE_BYTES / MANY_BYTES_PER_SECOND
    expect(page.locator("#uploads .upload.complete")).to_have_count(
        MANY_FILES, timeout=3 * all_sent_ms
    )
    for file in picked:
        expect(page.locator("#files .file", has_text=file.path.name)).to_have_count(1)
    progress: dict[str, Any] = page.evaluate("window.filesvcProgress")
    for file in picked:
        seen = progress[file.path.name]
        assert seen["state"] == "complete", (file.path.name, seen)
        # Each bar was driven by its own stream's progress events, ending at every byte.
        assert seen["progress"] >= 1, (file.path.name, seen)
        assert seen["percents"][-1] == 100.0, (file.path.name, seen)
    uploads: dict[str, int] = page.evaluate("window.filesvcUploads")
    assert uploads == {"running": 0, "mostRunning": 2}, uploads
    assert listed_names(server, editor, "many-") >= {f.path.name for f in picked}


def test_dropped_files_upload_and_one_is_deleted_with_its_button(
    page: Page, server: RunningServer, editor: User
) -> None:
    from playwright.sync_api import expect

    names = ["dropped-a.txt", "dropped-b.txt", "dropped-c.txt"]
    sign_in(page, server, editor)
    transfer = page.evaluate_handle(
        """(names) => {
            const data = new DataTransfer();
            for (const name of names) {
                data.items.add(new File([`the bytes of ${name}\n`], name, { type: "text/plain" }));
            }
            return data;
        }""",
        names,
    )
    page.dispatch_event("#drop", "dragenter", {"dataTransfer": transfer})
    expect(page.locator("#drop")).to_have_class(re.compile(r"\bover\b"))
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    expect(page.locator("#drop")).not_to_have_class(re.compile(r"\bover\b"))

    expect(page.locator("#uploads .upload.complete")).to_have_count(len(names))
    for name in names:
        expect(page.locator("#files .file", has_text=name)).to_have_count(1)
    assert listed_names(server, editor, "dropped-") == set(names)

    # Delete the second one with its button, accepting the page's confirmation.
    dialogs: list[str] = []

    def accept(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.locator("#files .file", has_text="dropped-b.txt").locator("button.delete").click()
    expect(page.locator("#files .file", has_text="dropped-b.txt")).to_have_count(0)
    for name in ("dropped-a.txt", "dropped-c.txt"):
        expect(page.locator("#files .file", has_text=name)).to_have_count(1)
    assert dialogs == ["Delete dropped-b.txt?"]
    assert listed_names(server, editor, "dropped-") == {"dropped-a.txt", "dropped-c.txt"}
