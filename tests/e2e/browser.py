"""The browser side of the e2e suite: Debian's chromium driven by Playwright, offline.

FastAPI's `/docs` page loads Swagger UI from jsDelivr, and the test machines reach no
internet. The npm package `swagger-ui-dist@5` is installed once into a cache that git
ignores (the virtualenv's `node/` directory) and the page's CDN requests are answered
from it; every other request that would leave the test server is aborted.

Playwright is imported inside functions only, so that the suite still collects (and
these tests skip, or fail under CI) where it is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Locator, Page, Response, Route

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SWAGGER_UI_PACKAGE = "swagger-ui-dist@5"
SWAGGER_UI_CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"
FASTAPI_FAVICON_HOST = "https://fastapi.tiangolo.com/"
# What FastAPI's /docs page takes from the CDN.
SWAGGER_UI_FILES = ("swagger-ui-bundle.js", "swagger-ui.css")
NPM_TIMEOUT = 180.0
# Playwright's waits (the default is 30 s; a /docs page is ready in one or two).
UI_TIMEOUT_MS = 10_000


def missing_prerequisite(reason: str) -> NoReturn:
    """Skip on a developer machine; fail under CI, where the image must provide it."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the CI image must provide it)")
    pytest.skip(reason)


# --- Swagger UI, installed from npm ------------------------------------------------------


def node_cache_dir() -> Path:
    """Where npm installs: inside the virtualenv (git-ignored, gone with it) if there is one."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "node"
    return Path.home() / ".cache" / "filesvc-tests" / "node"


def _installed_major(dist: Path) -> str | None:
    try:
        manifest: dict[str, Any] = json.loads((dist / "package.json").read_text())
    except (OSError, ValueError):
        return None
    if not all((dist / name).is_file() for name in SWAGGER_UI_FILES):
        return None
    version = str(manifest.get("version", ""))
    return version.split(".", 1)[0] or None


def swagger_ui_dist() -> Path:
    """The `swagger-ui-dist@5` package directory, installed with npm on first use."""
    prefix = node_cache_dir()
    dist = prefix / "node_modules" / "swagger-ui-dist"
    if _installed_major(dist) == "5":
        return dist
    npm = shutil.which("npm")
    if npm is None:
        missing_prerequisite(
            f"npm is not on PATH; it installs {SWAGGER_UI_PACKAGE} for the /docs browser test"
        )
    command = [
        npm, "install", "--prefix", str(prefix),
        "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error",
        SWAGGER_UI_PACKAGE,
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        missing_prerequisite(f"`{' '.join(command)}` took over {NPM_TIMEOUT:.0f}s")
    if result.returncode != 0 or _installed_major(dist) != "5":
        missing_prerequisite(
            f"`{' '.join(command)}` failed with exit code {result.returncode}:\n"
            + (result.stderr or result.stdout)[-2000:]
        )
    return dist


def serve_offline(context: BrowserContext, base_url: str, dist: Path) -> list[str]:
    """Answer Swagger UI's CDN requests from `dist`; abort every other outside request.

    Returns the (live) list of the URLs that were aborted.
    """
    root = dist.resolve()
    cdn_path = urlsplit(SWAGGER_UI_CDN).path
    aborted: list[str] = []

    def handle(route: Route) -> None:
        url = route.request.url
        if url.startswith(SWAGGER_UI_CDN):
            path = (root / urlsplit(url).path.removeprefix(cdn_path)).resolve()
            if path.is_relative_to(root) and path.is_file():
                route.fulfill(path=path)
            else:
                route.fulfill(status=404, body=f"{url} is not in {SWAGGER_UI_PACKAGE}")
        elif url.startswith(FASTAPI_FAVICON_HOST):
            route.fulfill(path=root / "favicon-32x32.png")
        else:
            aborted.append(url)
            route.abort("internetdisconnected")

    local_prefix = base_url.rstrip("/") + "/"

    def leaves_server(url: str) -> bool:
        return not url.startswith(local_prefix)

    context.route(leaves_server, handle)
    return aborted


# --- driving Swagger UI --------------------------------------------------------------------


@dataclass
class SwaggerUI:
    """FastAPI's /docs page, driven the way a person would use it."""

    page: Page
    base_url: str
    page_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.set_default_timeout(UI_TIMEOUT_MS)
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def open(self) -> None:
        from playwright.sync_api import expect

        response = self.page.goto(self.base_url + "/docs")
        assert response is not None
        assert response.status == 200, response.status_text
        expect(self.page.locator(".swagger-ui .info .title")).to_contain_text("filesvc")
        expect(self.page.locator(".opblock").first).to_be_visible()
        assert not self.page_errors, f"Swagger UI raised: {self.page_errors}"

    def authorize(self, username: str, password: str) -> None:
        """The OAuth2 password flow of the "Authorize" dialog."""
        from playwright.sync_api import expect

        self.page.get_by_role("button", name="Authorize", exact=True).click()
        dialog = self.page.locator(".dialog-ux")
        dialog.locator("#oauth_username").fill(username)
        dialog.locator("#oauth_password").fill(password)
        dialog.get_by_role("button", name="Apply given OAuth2 credentials").click()
        expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible()
        dialog.get_by_role("button", name="Close").click()
        expect(dialog).to_have_count(0)

    def operation(self, method: str, path: str) -> Locator:
        """The block of one operation, expanded, in "Try it out" mode."""
        from playwright.sync_api import expect

        summary_path = self.page.locator(f'.opblock-summary-path[data-path="{path}"]')
        block = self.page.locator(f".opblock.opblock-{method.lower()}").filter(has=summary_path)
        expect(block, f"{method} {path} is not on /docs").to_have_count(1)
        block.locator(".opblock-summary").click()
        block.get_by_role("button", name="Try it out").click()
        expect(block.get_by_role("button", name="Execute")).to_be_visible()
        return block

    @staticmethod
    def file_pickers(block: Locator) -> Locator:
        return block.locator(".opblock-section-request-body input[type=file]")

    @staticmethod
    def fill_parameter(block: Locator, name: str, value: str) -> None:
        box = block.locator(f'tr[data-param-name="{name}"] input')
        box.fill(value)
        box.blur()  # Swagger UI debounces typing; leaving the field commits it at once

    def execute(self, block: Locator, method: str, path: str) -> Answer:
        """Click "Execute"; the HTTP response the page got, once Swagger UI shows it."""
        from playwright.sync_api import expect

        def is_the_call(response: Response) -> bool:
            request = response.request
            return request.method == method.upper() and urlsplit(response.url).path == path

        with self.page.expect_response(is_the_call) as called:
            block.get_by_role("button", name="Execute").click()
        status = called.value.status
        # The body as Swagger UI shows it (Chromium may no longer hold it for CDP to read).
        answer = block.locator(".live-responses-table tbody tr.response").first
        expect(answer.locator(".response-col_status")).to_have_text(re.compile(rf"^\s*{status}\b"))
        body = answer.locator(".response-col_description .highlight-code code").text_content()
        return Answer(status, body or "")


@dataclass(frozen=True)
class Answer:
    """What Swagger UI shows of a response: its status and body."""

    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)
