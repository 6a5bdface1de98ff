"""Hostile file names over real HTTP: never a path, never a header break.

Names reach the server through four doors: the multipart `filename`, the multipart `name`
field, the raw-upload URL and PATCH. Whatever comes in, the download's
Content-Disposition must stay one clean header line and no file may appear outside
<data>/blobs.
"""

from __future__ import annotations

import fnmatch
import os
import secrets
import unicodedata
from typing import Any
from urllib.parse import quote, unquote

import pytest

from .server import BLOB_PATH_RE, TMP_DIR, RunningServer, User, blob_files, snapshot, wait_for
from .wire import closing, multipart_content_type, part, raw_exchange, request_head

pytestmark = pytest.mark.e2e

BOUNDARY = b"e2e-names-3b9d"
DATA = b"hostile names, harmless bytes\n"
LONG_NAME = "n" * 3996 + ".txt"  # 4,000 bytes
DATA_DIR_ENTRIES = ("filesvc.db*", "secret_key", "blobs")
ROOT_ENTRIES = {"data", "server.stdout.log", "server.stderr.log"}

# id: (door, what goes through it)
CASES: dict[str, tuple[str, bytes | str]] = {
    "filename-dot-dot": ("filename", b"../../etc/passwd"),
    "filename-4000-bytes": ("filename", LONG_NAME.encode()),
    # What browsers send for a"<CR><LF>X: y: the HTML spec percent-encodes ", CR and LF.
    "filename-crlf-as-browsers-send-it": ("filename", b"a%22%0D%0AX: y"),
    # curl escapes a quote in a file name with a backslash.
    "filename-quote-as-curl-sends-it": ("filename", b'say \\"hi\\".txt'),
    "filename-nul-byte": ("filename", b"a\x00.jpg"),
    "filename-non-ascii": ("filename", "naïve ☃ résumé.pdf".encode()),
    # A field value may hold raw CR and LF: this is the header injection attempt proper.
    "name-field-crlf": ("name-field", b'a"\r\nX: y'),
    "name-field-dot-dot": ("name-field", b"../../../../tmp/evil"),
    "raw-url-encoded-dot-dot": ("raw-url", "..%2F..%2Fetc%2Fpasswd"),
    "raw-url-literal-dot-dot": ("raw-url", "../../etc/passwd"),
    "raw-url-crlf": ("raw-url", "a%22%0D%0AX%3A%20y"),
    "raw-url-nul-byte": ("raw-url", "a%00.jpg"),
    "raw-url-4000-bytes": ("raw-url", LONG_NAME),
    "patch-crlf": ("patch", 'a"\r\nX: y'),
}


def upload(
    server: RunningServer, user: User, door: str, value: bytes | str
) -> tuple[int, dict[str, Any]]:
    auth = ("Authorization", f"Bearer {user.token}")
    if door in ("filename", "name-field"):
        if door == "filename":
            assert isinstance(value, bytes)
            disposition = b'form-data; name="file"; filename="' + value + b'"'
            body = part(BOUNDARY, disposition, DATA)
        else:
            assert isinstance(value, bytes)
            body = part(BOUNDARY, b'form-data; name="name"', value, None)
            body += part(BOUNDARY, b'form-data; name="file"; filename="plain.txt"', DATA)
        body += closing(BOUNDARY)
        headers = [
            auth,
            ("Content-Type", multipart_content_type(BOUNDARY)),
            ("Content-Length", str(len(body))),
        ]
        response = raw_exchange(server, request_head("POST", "/api/v1/files", headers), body)
    elif door == "raw-url":
        assert isinstance(value, str)
        target = "/api/v1/files/raw/" + value
        headers = [auth, ("Content-Length", str(len(DATA)))]
        response = raw_exchange(server, request_head("PUT", target, headers), DATA)
    else:
        assert door == "patch"
        assert isinstance(value, str)
        with server.client(user.token) as client:
            created = client.put("/api/v1/files/raw/plain.txt", content=DATA)
            assert created.status_code == 201, created.text
            patched = client.patch(f"/api/v1/files/{created.json()['id']}", json={"name": value})
        result: dict[str, Any] = patched.json()
        return patched.status_code, result
    return response.status, response.json()


def has_control_characters(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)


def assert_nothing_outside_blobs(server: RunningServer) -> None:
    assert set(os.listdir(server.root)) == ROOT_ENTRIES
    for entry in os.listdir(server.data_dir):
        assert any(fnmatch.fnmatch(entry, pattern) for pattern in DATA_DIR_ENTRIES), entry
    for relative in blob_files(server):
        assert BLOB_PATH_RE.match(relative), f"unexpected file under blobs/: {relative!r}"
    assert not any(name.startswith(TMP_DIR + "/") for name in blob_files(server))


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_name_is_only_ever_display_text(
    server: RunningServer, editor: User, case: str
) -> None:
    door, value = CASES[case]
    before = snapshot(server)

    status, body = upload(server, editor, door, value)

    assert_nothing_outside_blobs(server)
    if 400 <= status < 500:  # refusing is fine, as long as it is clean and keeps nothing
        assert isinstance(body.get("code"), str), body
        if door != "patch":  # (a refused PATCH leaves the file it renames, of course)
            assert server.file_ids() == before.rows
            assert blob_files(server) == before.blobs
        return
    assert status in (200, 201), body
    name = body["name"]
    assert name
    assert not has_control_characters(name), repr(name)
    assert len(name) <= 255
    if case.endswith("dot-dot"):
        assert "/" in name  # kept as display text, as given: it was never a path
    if case.endswith("4000-bytes"):
        assert name.endswith(".txt")
    assert server.get_file(body["id"])["name"] == name

    download = raw_exchange(
        server,
        request_head("GET", body["content_url"], [("Authorization", f"Bearer {editor.token}")]),
    )
    assert download.status == 200
    assert download.body == DATA
    # The head arrived as clean CRLF-separated lines: no bare CR or LF smuggled into one,
    # no header but the ones the server meant to send.
    for line in download.header_lines:
        assert b"\r" not in line, line
        assert b"\n" not in line, line
    assert download.get_all("x") == []
    dispositions = download.get_all("content-disposition")
    assert len(dispositions) == 1, download.header_lines
    disposition = dispositions[0]
    assert disposition.startswith("attachment; filename=")
    encoded = disposition.partition("filename*=UTF-8''")[2]
    assert unquote(encoded, errors="strict") == name  # what a browser will save it as


def test_a_name_in_the_url_cannot_forge_a_log_line(server: RunningServer, editor: User) -> None:
    request_id = "e2e-" + secrets.token_hex(8)
    forged = f"FORGED-{request_id} INFO filesvc.access: looks like a real line"
    target = "/api/v1/files/raw/a.txt%0D%0A" + quote(forged)
    headers = [
        ("Authorization", f"Bearer {editor.token}"),
        ("X-Request-ID", request_id),
        ("Content-Length", str(len(DATA))),
    ]

    response = raw_exchange(server, request_head("PUT", target, headers), DATA)

    assert response.status < 500
    # The access line is written once the response is out: wait for it by its request id.
    wait_for(
        lambda: f"id={request_id}" in server.stderr_path.read_text(errors="replace"),
        timeout=10,
        what="the request's access log line",
    )
    lines = server.stderr_path.read_text(errors="replace").splitlines()
    assert not [line for line in lines if line.startswith("FORGED-")]
