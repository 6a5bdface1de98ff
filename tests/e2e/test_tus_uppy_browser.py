"""Uppy (its prebuilt bundle from npm) in headless Chromium uploads a 50 MiB file to
/api/v1/uploads over tus, from a page on another origin (so CORS must let it read the tus
headers), with progress along the way; the stored file has the picked bytes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from .conftest import serve_on
from .npm import UPPY, npm_package
from .server import MiB, RunningServer, User, create_user, make_random_file

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e

PICKED_BYTES = 50 * MiB
CHUNK = 5 * MiB
UI_TIMEOUT_MS = 120_000
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="stylesheet" href="/uppy.min.css"></head>
<body>
<input type="file" id="pick">
<script type="module">
import { Uppy, Tus } from "/uppy.min.mjs";
const settings = JSON.parse(document.getElementById("settings").textContent);
window.seen = { progress: [], fileId: null, uploadURL: null, error: null, done: false };
const uppy = new Uppy({ autoProceed: true }).use(Tus, {
  endpoint: settings.endpoint,
  chunkSize: settings.chunkSize,
  headers: { Authorization: `Bearer ${settings.token}` },
  retryDelays: [0, 1000, 3000],
  onAfterResponse(request, response) {
    const id = response.getHeader("X-File-Id");
    if (id) window.seen.fileId = id;
  },
});
uppy.on("upload-progress", (file, progress) => window.seen.progress.push(progress.bytesUploaded));
uppy.on("upload-success", (file, response) => { window.seen.uploadURL = response.uploadURL; });
uppy.on("upload-error", (file, error) => { window.seen.error = String(error); });
uppy.on("complete", () => { window.seen.done = true; });
document.getElementById("pick").addEventListener("change", (event) => {
  const file = event.target.files[0];
  uppy.addFile({ name: file.name, type: "application/octet-stream", data: file });
});
</script>
<script type="application/json" id="settings">SETTINGS</script>
</body></html>
"""


class _PageFiles(BaseHTTPRequestHandler):
    """Serves the test page and Uppy's bundle (set on the class by `page_site`)."""

    files: ClassVar[dict[str, tuple[bytes, str]]] = {}

    def do_GET(self) -> None:
        body, content_type = self.files.get(self.path, (b"not found", "text/plain"))
        self.send_response(200 if self.path in self.files else 404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def page_site() -> Iterator[tuple[str, type[_PageFiles]]]:
    """Another origin than the server's (so CORS applies), on loopback like it: Chromium
    lets only loopback pages call loopback addresses."""
    handler = type("PageFiles", (_PageFiles,), {"files": {}})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def server_process(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    page_site: tuple[str, type[_PageFiles]],
) -> Iterator[RunningServer]:
    env = {"FILESVC_CORS_ORIGINS": page_site[0]}
    yield from serve_on(request, tmp_path_factory, "local", env)


@pytest.fixture
def page(
    chromium: Browser,
    server: RunningServer,
    editor: User,
    page_site: tuple[str, type[_PageFiles]],
) -> Iterator[Page]:
    """The test page on its own origin with Uppy from npm; nothing else leaves the machine."""
    origin, files = page_site
    dist = npm_package(*UPPY) / "dist"
    settings = {
        "endpoint": server.url("/api/v1/uploads"),
        "token": editor.token,
        "chunkSize": CHUNK,
    }
    files.files.update(
        {
            "/": (PAGE.replace("SETTINGS", json.dumps(settings)).encode(), "text/html"),
            "/uppy.min.mjs": ((dist / "uppy.min.mjs").read_bytes(), "text/javascript"),
            "/uppy.min.css": ((dist / "uppy.min.css").read_bytes(), "text/css"),
        }
    )
    context = chromium.new_context()
    context.route(lambda url: not url.startswith((origin, server.base_url)), lambda r: r.abort())
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
        assert not errors, errors
    finally:
        context.close()


@pytest.fixture(scope="module")
def editor(server_process: RunningServer) -> User:
    return create_user(server_process, "editor")


def test_uppy_uploads_50_mib_over_tus_with_progress(
    page: Page,
    server: RunningServer,
    page_site: tuple[str, type[_PageFiles]],
    tmp_path: Path,
) -> None:
    picked = make_random_file(tmp_path / "uppy-50MiB.bin", PICKED_BYTES)
    response = page.goto(page_site[0] + "/")
    assert response is not None
    assert response.status == 200
    page.locator("#pick").set_input_files(picked.path)
    page.wait_for_function("window.seen.done || window.seen.error", timeout=UI_TIMEOUT_MS)

    seen: dict[str, Any] = page.evaluate("window.seen")
    assert seen["error"] is None, seen["error"]
    assert seen["uploadURL"].startswith(server.url("/api/v1/uploads/"))
    progress = seen["progress"]
    assert progress == sorted(progress)
    assert progress[-1] == PICKED_BYTES
    assert len([p for p in progress if 0 < p < PICKED_BYTES]) >= 3, progress
    # X-File-Id reached the page: CORS exposes it (and Upload-Offset, or Uppy would fail).
    assert seen["fileId"]
    file = server.get_file(seen["fileId"])
    assert file["name"] == picked.path.name
    assert file["size"] == PICKED_BYTES
    assert file["sha256"] == picked.sha256
