"""Who may do what to which file, as a table: caller, visibility and route.

Every route under /api/v1 must appear here, in NOT_FILE_ROUTES or in WEBSOCKET_ROUTES
(checked against the app's routing table, not only the OpenAPI document), so a new route
cannot ship without someone deciding who may call it. Each cell runs against a fresh file, and a
refused call must leave the file, the list and the storage exactly as they were.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import Route, WebSocketRoute

from filesvc.config import Settings
from tests.conftest import Account, blob_files, make_account
from tests.files.helpers import uploaded

CALLERS = ("anonymous", "viewer", "owner", "other_editor", "admin")
VISIBILITIES = ("private", "internal", "public")
LISTED, HIDDEN = "listed", "hidden"  # GET /files: 200, with or without the file
Expected = dict[str, tuple[int | str, int | str, int | str]]  # caller → (private, internal, public)

READ: Expected = {
    "anonymous": (401, 401, 200),
    "viewer": (404, 200, 200),
    "owner": (200, 200, 200),
    "other_editor": (404, 200, 200),
    "admin": (200, 200, 200),
}


def change(ok: int) -> Expected:
    # Unreadable: 404, as if it did not exist; readable but not theirs: 403.
    return {
        "anonymous": (401, 401, 401),
        "viewer": (404, 403, 403),
        "owner": (ok, ok, ok),
        "other_editor": (404, 403, 403),
        "admin": (ok, ok, ok),
    }


UPLOAD: Expected = {
    "anonymous": (401, 401, 401),
    "viewer": (403, 403, 403),
    "owner": (201, 201, 201),
    "other_editor": (201, 201, 201),
    "admin": (201, 201, 201),
}
LIST: Expected = {
    "anonymous": (401, 401, 401),
    "viewer": (HIDDEN, LISTED, LISTED),
    "owner": (LISTED, LISTED, LISTED),
    "other_editor": (HIDDEN, LISTED, LISTED),
    "admin": (LISTED, LISTED, LISTED),
}
# A share link made by the owner works for anyone who holds it, signed in or not.
SHARED: Expected = dict.fromkeys(CALLERS, (200, 200, 200))

MATRIX: dict[tuple[str, str], Expected] = {
    ("POST", "/api/v1/files"): UPLOAD,
    ("POST", "/api/v1/files/batch"): UPLOAD,
    ("PUT", "/api/v1/files/raw/{name}"): UPLOAD,
    ("GET", "/api/v1/files"): LIST,
    ("GET", "/api/v1/files/{file_id}"): READ,
    ("PATCH", "/api/v1/files/{file_id}"): change(200),
    ("DELETE", "/api/v1/files/{file_id}"): change(204),
    ("PUT", "/api/v1/files/{file_id}/content"): change(200),
    ("GET", "/api/v1/files/{file_id}/content"): READ,
    ("HEAD", "/api/v1/files/{file_id}/content"): READ,
    ("POST", "/api/v1/files/{file_id}/links"): change(201),
    ("GET", "/api/v1/shared/{token}"): SHARED,
    ("HEAD", "/api/v1/shared/{token}"): SHARED,
    ("GET", "/api/v1/archive"): READ,
}
# Routes that never touch a file, with who guards them instead.
NOT_FILE_ROUTES = {
    ("POST", "/api/v1/auth/token"): "anyone; checks the password",
    ("GET", "/api/v1/users/me"): "signed in",
    ("POST", "/api/v1/users"): "admin",
    ("GET", "/api/v1/users"): "admin",
    ("PATCH", "/api/v1/users/{user_id}"): "admin",
    ("DELETE", "/api/v1/users/{user_id}"): "admin",
    ("POST", "/api/v1/transfers"): "signed in; the transfer is theirs",
    ("GET", "/api/v1/transfers/{transfer_id}/events"): "its owner and admins; others 404",
    ("GET", "/api/v1/events"): "signed in; only events of files they may read",
    # tus uploads: not files until their last byte; see UPLOADS_MATRIX below.
    ("OPTIONS", "/api/v1/uploads"): "anyone; tus discovery",
    ("OPTIONS", "/api/v1/uploads/{upload_id}"): "anyone; tus discovery",
    ("POST", "/api/v1/uploads"): "editor, as POST /files",
    ("HEAD", "/api/v1/uploads/{upload_id}"): "its uploader and admins; others 404",
    ("PATCH", "/api/v1/uploads/{upload_id}"): "its uploader and admins (editor); others 404",
    ("DELETE", "/api/v1/uploads/{upload_id}"): "its uploader and admins; others 404",
}
# WebSocket routes are not in the OpenAPI document; the same decision, listed by name.
WEBSOCKET_ROUTES = {
    ("watch_transfer_ws", "/api/v1/transfers/{transfer_id}/ws"): "its owner and admins; others 404",
}

CONTENT = b"the file's bytes\n" * 64
NEW_CONTENT = b"replaced\n"


def test_every_api_route_is_in_the_matrix(app: FastAPI) -> None:
    # The OpenAPI document lists every documented route, HEAD ones included...
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/api/")
        for method in operations
    }
    assert documented == set(MATRIX) | set(NOT_FILE_ROUTES)
    # ...but not those hidden from it, nor WebSocket routes: the app's own routing table
    # has all of them.
    http: set[tuple[str, str]] = set()
    websockets: set[tuple[str, str]] = set()
    other: list[str] = []
    for route in iter_route_contexts(app.routes):
        path = route.path_format
        if path is None or not path.startswith("/api/"):
            continue
        if isinstance(route.original_route, WebSocketRoute):
            websockets.add((str(route.name), path))
        elif isinstance(route.original_route, Route) and route.methods:
            http |= {(method, path) for method in route.methods}
        else:
            other.append(path)
    assert http == set(MATRIX) | set(NOT_FILE_ROUTES)
    assert websockets == set(WEBSOCKET_ROUTES)
    assert other == []  # no mount or other kind of route under /api


def test_every_status_in_the_matrix_is_documented_on_its_route(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    for (method, path), expected in MATRIX.items():
        documented = set(paths[path][method.lower()]["responses"])
        statuses = {str(s) for row in expected.values() for s in row if isinstance(s, int)}
        assert statuses <= documented, (method, path, statuses - documented)


def test_the_openapi_document_says_what_a_refusal_means(app: FastAPI) -> None:
    paths = app.openapi()["paths"]

    def description(method: str, path: str, status: int) -> str:
        text: str = paths[path][method]["responses"][str(status)]["description"]
        return text

    for method, path in [
        ("get", "/api/v1/files/{file_id}"),
        ("get", "/api/v1/files/{file_id}/content"),
        ("head", "/api/v1/files/{file_id}/content"),
        ("patch", "/api/v1/files/{file_id}"),
        ("delete", "/api/v1/files/{file_id}"),
        ("put", "/api/v1/files/{file_id}/content"),
        ("post", "/api/v1/files/{file_id}/links"),
    ]:
        assert "one you may not read" in description(method, path, 404), (method, path)
    for method in ("get", "head"):
        assert "not public" in description(method, "/api/v1/files/{file_id}/content", 401)
        refused = description(method, "/api/v1/shared/{token}", 403)
        for code in ("invalid_link", "link_expired", "link_outdated", "link_revoked"):
            assert code in refused, (method, code)
        assert "deleted" in description(method, "/api/v1/shared/{token}", 404)
    assert "invalid_archive_request" in description("get", "/api/v1/archive", 400)
    assert "may not read" in description("get", "/api/v1/archive", 404)
    assert "not public" in description("get", "/api/v1/archive", 401)


@dataclass
class Callers:
    accounts: dict[str, Account | None]
    owner: Account
    admin: Account

    def headers(self, caller: str) -> dict[str, str]:
        account = self.accounts[caller]
        return account.headers if account else {}


@pytest.fixture
async def callers(
    client: httpx.AsyncClient, admin: Account, editor: Account, viewer: Account
) -> Callers:
    other = await make_account(client, admin, "other", "editor")
    accounts: dict[str, Account | None] = {
        "anonymous": None,
        "viewer": viewer,
        "owner": editor,
        "other_editor": other,
        "admin": admin,
    }
    return Callers(accounts, editor, admin)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Case:
    client: httpx.AsyncClient
    callers: Callers
    caller: str
    visibility: str
    file: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return self.callers.headers(self.caller)

    @property
    def url(self) -> str:
        return f"/api/v1/files/{self.file['id']}"


Request = Callable[[Case], Awaitable[httpx.Response]]


async def _upload(case: Case) -> httpx.Response:
    return await case.client.post(
        "/api/v1/files",
        files={"file": ("new.txt", CONTENT, "text/plain")},
        data={"visibility": case.visibility},
        headers=case.headers,
    )


async def _upload_batch(case: Case) -> httpx.Response:
    return await case.client.post(
        "/api/v1/files/batch",
        files=[("file", ("a.txt", CONTENT, "text/plain")), ("file", ("b.txt", b"b", "text/plain"))],
        data={"visibility": case.visibility},
        headers=case.headers,
    )


async def _upload_raw(case: Case) -> httpx.Response:
    return await case.client.put(
        f"/api/v1/files/raw/new.txt?visibility={case.visibility}",
        content=CONTENT,
        headers=case.headers,
    )


async def _list(case: Case) -> httpx.Response:
    return await case.client.get("/api/v1/files?limit=1000", headers=case.headers)


async def _read(case: Case) -> httpx.Response:
    return await case.client.get(case.url, headers=case.headers)


async def _patch(case: Case) -> httpx.Response:
    return await case.client.patch(case.url, json={"name": "renamed.txt"}, headers=case.headers)


async def _delete(case: Case) -> httpx.Response:
    return await case.client.delete(case.url, headers=case.headers)


async def _replace(case: Case) -> httpx.Response:
    return await case.client.put(f"{case.url}/content", content=NEW_CONTENT, headers=case.headers)


async def _download(case: Case) -> httpx.Response:
    return await case.client.get(f"{case.url}/content", headers=case.headers)


async def _head(case: Case) -> httpx.Response:
    return await case.client.head(f"{case.url}/content", headers=case.headers)


async def _make_link(case: Case) -> httpx.Response:
    return await case.client.post(
        f"{case.url}/links", json={"expires_in": 600}, headers=case.headers
    )


async def _owners_link(case: Case) -> str:
    response = await case.client.post(
        f"{case.url}/links", json={"expires_in": 600}, headers=case.callers.owner.headers
    )
    assert response.status_code == 201, response.text
    url: str = response.json()["url"]
    return url


async def _shared(case: Case) -> httpx.Response:
    return await case.client.get(await _owners_link(case), headers=case.headers)


async def _shared_head(case: Case) -> httpx.Response:
    return await case.client.head(await _owners_link(case), headers=case.headers)


async def _archive(case: Case) -> httpx.Response:
    return await case.client.get(
        "/api/v1/archive", params={"id": case.file["id"]}, headers=case.headers
    )


REQUESTS: dict[tuple[str, str], Request] = {
    ("POST", "/api/v1/files"): _upload,
    ("POST", "/api/v1/files/batch"): _upload_batch,
    ("PUT", "/api/v1/files/raw/{name}"): _upload_raw,
    ("GET", "/api/v1/files"): _list,
    ("GET", "/api/v1/files/{file_id}"): _read,
    ("PATCH", "/api/v1/files/{file_id}"): _patch,
    ("DELETE", "/api/v1/files/{file_id}"): _delete,
    ("PUT", "/api/v1/files/{file_id}/content"): _replace,
    ("GET", "/api/v1/files/{file_id}/content"): _download,
    ("HEAD", "/api/v1/files/{file_id}/content"): _head,
    ("POST", "/api/v1/files/{file_id}/links"): _make_link,
    ("GET", "/api/v1/shared/{token}"): _shared,
    ("HEAD", "/api/v1/shared/{token}"): _shared_head,
    ("GET", "/api/v1/archive"): _archive,
}
ERROR_CODES = {
    401: {"not_authenticated"},
    403: {"permission_denied"},
    404: {"file_not_found"},
}


def test_every_matrix_row_has_a_request() -> None:
    assert set(REQUESTS) == set(MATRIX)


async def _state(client: httpx.AsyncClient, admin: Account, settings: Settings) -> Any:
    """What a refused call must not change: every row as the admin sees it, and the blobs."""
    listing = await client.get("/api/v1/files?limit=1000", headers=admin.headers)
    return listing.json()["items"], blob_files(settings)


def _check_success(case: Case, route: tuple[str, str], response: httpx.Response) -> None:
    """The allowed call did its job, judged by what the user gets back."""
    method, path = route
    downloads = path.endswith("/content") and method in ("GET", "HEAD")
    if downloads or path == "/api/v1/shared/{token}":
        body_ok = method == "HEAD" or sha256(response.content) == case.file["sha256"]
        assert body_ok
        assert response.headers["content-length"] == str(case.file["size"])
    elif path == "/api/v1/archive":
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            assert sha256(archive.read(case.file["name"])) == case.file["sha256"]
    elif path == "/api/v1/files/{file_id}" and method == "GET":
        assert response.json() == case.file
    elif method == "PATCH":
        assert response.json()["name"] == "renamed.txt"
    elif route == ("PUT", "/api/v1/files/{file_id}/content"):
        assert response.json()["sha256"] == sha256(NEW_CONTENT)
    elif method in ("POST", "PUT") and response.status_code == 201 and "items" in response.json():
        assert {item["visibility"] for item in response.json()["items"]} == {case.visibility}
    elif method in ("POST", "PUT") and path != "/api/v1/files/{file_id}/links":
        assert response.json()["visibility"] == case.visibility


@pytest.mark.parametrize("route", list(MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
async def test_access_matrix(
    route: tuple[str, str],
    client: httpx.AsyncClient,
    callers: Callers,
    settings: Settings,
) -> None:
    request = REQUESTS[route]
    failures: list[str] = []
    for visibility_index, visibility in enumerate(VISIBILITIES):
        for caller in CALLERS:
            expected = MATRIX[route][caller][visibility_index]
            file = await uploaded(
                client,
                callers.owner,
                data=CONTENT,
                filename="matrix.txt",
                fields={"visibility": visibility},
            )
            case = Case(client, callers, caller, visibility, file)
            before = await _state(client, callers.admin, settings)
            response = await request(case)

            if expected in (LISTED, HIDDEN):
                listed = file["id"] in [item["id"] for item in response.json()["items"]]
                got: int | str = (LISTED if listed else HIDDEN) if response.is_success else 0
            else:
                got = response.status_code
            if got != (expected if expected in (LISTED, HIDDEN) else int(expected)):
                failures.append(f"{caller} on a {visibility} file: {got}, expected {expected}")
                continue
            if isinstance(expected, int) and expected >= 400:
                if route[0] != "HEAD":
                    assert response.json()["code"] in ERROR_CODES[expected], response.text
                if expected == 401:
                    assert response.headers["www-authenticate"] == "Bearer"
                assert await _state(client, callers.admin, settings) == before, (
                    f"{caller} on a {visibility} file was refused but changed something"
                )
            elif isinstance(expected, int):
                _check_success(case, route, response)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "route",
    [r for r in MATRIX if "{file_id}" in r[1]],
    ids=lambda r: f"{r[0]} {r[1]}",
)
async def test_an_unknown_id_looks_like_an_unreadable_one(
    route: tuple[str, str], client: httpx.AsyncClient, callers: Callers
) -> None:
    method, path = route
    url = path.replace("{file_id}", "5f0e3c1a-2b4d-4c6e-8f90-123456789abc")
    for caller, status in (("anonymous", 401), ("viewer", 404), ("admin", 404)):
        body = {"name": "x"} if method == "PATCH" else None
        response = await client.request(method, url, headers=callers.headers(caller), json=body)
        assert response.status_code == status, (caller, response.text)


# caller → status, for a tus upload the owner created (tus/dependencies.py decides).
UPLOADS_MATRIX: dict[tuple[str, str], dict[str, int]] = {
    ("OPTIONS", "/api/v1/uploads"): dict.fromkeys(CALLERS, 204),
    ("OPTIONS", "/api/v1/uploads/{upload_id}"): dict.fromkeys(CALLERS, 204),
    ("POST", "/api/v1/uploads"): {
        "anonymous": 401,
        "viewer": 403,
        "owner": 201,
        "other_editor": 201,
        "admin": 201,
    },
    ("HEAD", "/api/v1/uploads/{upload_id}"): {
        "anonymous": 401,
        "viewer": 404,
        "owner": 200,
        "other_editor": 404,
        "admin": 200,
    },
    ("PATCH", "/api/v1/uploads/{upload_id}"): {
        "anonymous": 401,
        "viewer": 403,
        "owner": 204,
        "other_editor": 404,
        "admin": 204,
    },
    ("DELETE", "/api/v1/uploads/{upload_id}"): {
        "anonymous": 401,
        "viewer": 404,
        "owner": 204,
        "other_editor": 404,
        "admin": 204,
    },
}
TUS_HEADERS = {"Tus-Resumable": "1.0.0"}


def test_every_upload_route_has_a_row() -> None:
    assert set(UPLOADS_MATRIX) == {route for route in NOT_FILE_ROUTES if "/uploads" in route[1]}


@pytest.mark.parametrize("route", list(UPLOADS_MATRIX), ids=lambda r: f"{r[0]} {r[1]}")
async def test_uploads_access_matrix(
    route: tuple[str, str], client: httpx.AsyncClient, callers: Callers
) -> None:
    method, path = route
    failures: list[str] = []
    for caller in CALLERS:
        created = await client.post(
            "/api/v1/uploads",
            headers={**callers.owner.headers, **TUS_HEADERS, "Upload-Length": "4"},
        )
        assert created.status_code == 201, created.text
        url = path.replace("{upload_id}", created.headers["location"].rsplit("/", 1)[1])
        headers = {**callers.headers(caller), **TUS_HEADERS}
        if method == "POST":
            headers["Upload-Length"] = "4"
        if method == "PATCH":
            headers |= {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
        response = await client.request(
            method, url, headers=headers, content=b"abcd" if method == "PATCH" else None
        )
        expected = UPLOADS_MATRIX[route][caller]
        if response.status_code != expected:
            failures.append(f"{caller}: {response.status_code}, expected {expected}")
            continue
        owners_view = await client.head(url, headers={**callers.owner.headers, **TUS_HEADERS})
        if expected >= 400 and path.endswith("{upload_id}"):
            # Refused: the upload is as it was.
            assert owners_view.status_code == 200
            assert owners_view.headers["upload-offset"] == "0"
        if method == "PATCH" and expected == 204:
            file = await client.get(
                response.headers["x-file-location"], headers=callers.owner.headers
            )
            assert file.json()["sha256"] == sha256(b"abcd")
    assert not failures, "\n".join(failures)
