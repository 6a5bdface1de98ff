"""`/docs` in a real browser: every upload endpoint has a file picker, and picking works.

DESIGN.md: "`/docs` shows every upload endpoint with a working file picker". The upload
handlers read the request stream themselves, so their bodies reach OpenAPI only through
the hand-written schemas of `filesvc/files/openapi.py`; this checks what Swagger UI
makes of them. The tests do what a person would: authorize, "Try it out", pick the file,
fill what is required (a path parameter) and "Execute", leaving the form's other fields
as Swagger UI offers them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .browser import (
    SwaggerUI,
    serve_offline,
    swagger_ui_dist,
)
from .server import ADMIN, RunningServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.e2e

UPLOAD_OPERATIONS = [
    ("POST", "/api/v1/files"),
    ("POST", "/api/v1/files/batch"),
    ("PUT", "/api/v1/files/raw/{name}"),
    ("PUT", "/api/v1/files/{file_id}/content"),
]


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def swagger_ui() -> Path:
    return swagger_ui_dist()


@pytest.fixture
def docs(
    chromium: Browser, swagger_ui: Path, server: RunningServer, tmp_path: Path
) -> Iterator[SwaggerUI]:
    """/docs of the module's server, open and authorized as the admin.

    A full-page screenshot lands in tmp_path whatever the outcome (its path is printed).
    """
    from playwright.sync_api import Error as PlaywrightError

    context = chromium.new_context(viewport={"width": 1280, "height": 1000})
    aborted = serve_offline(context, server.base_url, swagger_ui)
    docs = SwaggerUI(context.new_page(), server.base_url)
    try:
        docs.open()
        docs.authorize(ADMIN, server.admin_password)
        yield docs
    finally:
        screenshot = tmp_path / "docs.png"
        try:
            docs.page.screenshot(path=screenshot, full_page=True)
            print(f"screenshot of /docs: {screenshot}")
        except PlaywrightError as exc:
            print(f"no screenshot of /docs: {exc}")
        if aborted:
            print(f"requests aborted because they would leave the test server: {aborted}")
        context.close()


# --- helpers -------------------------------------------------------------------------------


def pick(tmp_path: Path, name: str) -> tuple[Path, bytes]:
    """A small file to pick in the browser, with content no other test has."""
    content = f"picked in /docs: {secrets.token_hex(16)}\n".encode()
    path = tmp_path / name
    path.write_bytes(content)
    return path, content


def assert_stored(server: RunningServer, shown: dict[str, Any], content: bytes) -> None:
    """The API (as the admin) has the file with exactly these bytes."""
    with server.client() as client:
        listed = client.get("/api/v1/files", params={"q": shown["name"], "limit": 1000})
        assert listed.status_code == 200, listed.text
        [item] = [item for item in listed.json()["items"] if item["id"] == shown["id"]]
        download = client.get(f"/api/v1/files/{shown['id']}/content")
    assert item["sha256"] == hashlib.sha256(content).hexdigest()
    assert item["size"] == len(content)
    assert download.status_code == 200
    assert download.content == content


# --- tests ---------------------------------------------------------------------------------


def test_every_upload_endpoint_offers_a_file_picker(docs: SwaggerUI) -> None:
    pickers = {
        f"{method} {path}": docs.file_pickers(docs.operation(method, path)).count()
        for method, path in UPLOAD_OPERATIONS
    }
    without = [operation for operation, count in pickers.items() if count == 0]
    assert not without, f"no file picker in /docs for {without}"
    assert docs.page_errors == []


def test_a_file_picked_in_docs_is_uploaded(
    docs: SwaggerUI, server: RunningServer, tmp_path: Path
) -> None:
    path, content = pick(tmp_path, f"picked-{secrets.token_hex(4)}.txt")
    operation = docs.operation("POST", "/api/v1/files")
    docs.file_pickers(operation).set_input_files(path)

    response = docs.execute(operation, "POST", "/api/v1/files")

    assert response.status == 201, response.text
    shown = response.json()
    assert shown["name"] == path.name
    assert shown["sha256"] == hashlib.sha256(content).hexdigest()
    assert_stored(server, shown, content)


def test_files_picked_in_docs_are_uploaded_as_a_batch(
    docs: SwaggerUI, server: RunningServer, tmp_path: Path
) -> None:
    tag = secrets.token_hex(4)
    picked = [pick(tmp_path, f"batch-{tag}-{n}.txt") for n in range(2)]
    operation = docs.operation("POST", "/api/v1/files/batch")
    operation.locator(".json-schema-form-item-add").click()  # a second picker
    pickers = docs.file_pickers(operation)
    for n, (path, _content) in enumerate(picked):
        pickers.nth(n).set_input_files(path)

    response = docs.execute(operation, "POST", "/api/v1/files/batch")

    assert response.status == 201, response.text
    items = response.json()["items"]
    assert [item["name"] for item in items] == [path.name for path, _content in picked]
    for item, (_path, content) in zip(items, picked, strict=True):
        assert_stored(server, item, content)


def test_a_file_picked_in_docs_is_uploaded_raw(
    docs: SwaggerUI, server: RunningServer, tmp_path: Path
) -> None:
    path, content = pick(tmp_path, "raw.txt")
    name = f"raw-{secrets.token_hex(4)}.txt"
    operation = docs.operation("PUT", "/api/v1/files/raw/{name}")
    docs.fill_parameter(operation, "name", name)
    docs.file_pickers(operation).set_input_files(path)

    response = docs.execute(operation, "PUT", f"/api/v1/files/raw/{name}")

    assert response.status == 201, response.text
    shown = response.json()
    assert shown["name"] == name
    assert_stored(server, shown, content)


def test_a_file_picked_in_docs_replaces_a_files_content(
    docs: SwaggerUI, server: RunningServer, tmp_path: Path
) -> None:
    name = f"replaced-{secrets.token_hex(4)}.txt"
    with server.client() as client:
        created = client.put(f"/api/v1/files/raw/{name}", content=b"old content\n")
    assert created.status_code == 201, created.text
    file_id = created.json()["id"]
    path, content = pick(tmp_path, "new.txt")
    operation = docs.operation("PUT", "/api/v1/files/{file_id}/content")
    docs.fill_parameter(operation, "file_id", file_id)
    docs.file_pickers(operation).set_input_files(path)

    response = docs.execute(operation, "PUT", f"/api/v1/files/{file_id}/content")

    assert response.status == 200, response.text
    shown = response.json()
    assert (shown["id"], shown["name"]) == (file_id, name)
    assert_stored(server, shown, content)
