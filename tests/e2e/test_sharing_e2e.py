"""Share links end to end: plain curl with no token downloads a private file through one.

The link is the only credential in these requests, so the tests also read the server's
logs afterwards: neither a share token nor an access token sent as `?access_token=` may
ever be written there.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from .conftest import on_both_stacks
from .server import LocalFile, MiB, RunningServer, User, login, sha256_of, wait_for
from .wire import CurlResult, curl_put_file, run_curl

pytestmark = pytest.mark.e2e


# Share links serve bytes through the same download path: ranges go to S3 as ranged GETs.
server_process = on_both_stacks()


SHARED_PREFIX = "/api/v1/shared/"
# What the access log prints for every share-link request instead of the path.
SHARED_TEMPLATE = "/api/v1/shared/{token}"
# Share tokens and access tokens (JWTs) both start with a JSON object, base64url-encoded:
# `{"` is `eyJ`. Nothing else the server logs looks like that.
TOKEN_LIKE_RE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}")


def upload_raw(
    server: RunningServer, user: User, curl: str, tmp_path: Path, path: Path, name: str
) -> dict[str, Any]:
    url = server.url(f"/api/v1/files/raw/{name}")
    file = curl_put_file(curl, tmp_path, user.token, path, url)
    assert file["visibility"] == "private"  # so only the link (or a token) can read it
    return file


def make_link(server: RunningServer, user: User, file_id: str, expires_in: int) -> str:
    """A share link's path (no FILESVC_PUBLIC_URL is set, so the server answers a path)."""
    before = time.time()
    with server.client(user.token) as client:
        response = client.post(f"/api/v1/files/{file_id}/links", json={"expires_in": expires_in})
    assert response.status_code == 201, response.text
    body = response.json()
    url: str = body["url"]
    assert url.startswith(SHARED_PREFIX), url
    expires_at = datetime.fromisoformat(body["expires_at"]).timestamp()
    assert before + expires_in - 2 <= expires_at <= time.time() + expires_in + 1
    return url


def token_of(link: str) -> str:
    return link.removeprefix(SHARED_PREFIX)


def changed_at(text: str, index: int) -> str:
    """`text` with the character at `index` replaced by another base64url character."""
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


def slice_of(path: Path, start: int, end: int) -> bytes:
    """Bytes [start, end) of a local file."""
    with path.open("rb") as f:
        f.seek(start)
        return f.read(end - start)


def slice_sha256(path: Path, start: int, end: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(start)
        remaining = end - start
        while remaining and (chunk := f.read(min(MiB, remaining))):
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def assert_error(result: CurlResult, status: int, code: str) -> None:
    assert result.returncode == 0, result.stderr
    assert result.status == status, result.body[:2000]
    assert result.header("content-type") == "application/json"
    assert result.json()["code"] == code


def test_a_link_downloads_100_mib_with_plain_curl_whole_and_in_ranges(
    server: RunningServer, editor: User, big_file: LocalFile, curl: str, tmp_path: Path
) -> None:
    file = upload_raw(server, editor, curl, tmp_path, big_file.path, "big.bin")
    assert file["sha256"] == big_file.sha256
    link = make_link(server, editor, file["id"], expires_in=600)
    url = server.url(link)
    etag = f'"{big_file.sha256}"'
    size = big_file.size

    # No -H anywhere below: the link alone must be enough.
    downloaded = tmp_path / "shared.bin"
    whole = run_curl(curl, tmp_path, url, output=downloaded)
    assert whole.returncode == 0, whole.stderr
    assert whole.status == 200
    assert sha256_of(downloaded) == big_file.sha256
    downloaded.unlink()  # pytest keeps the last runs' temp dirs; 100 MiB each is too much
    assert whole.header("content-length") == str(size)
    assert whole.header("etag") == etag
    assert whole.header("accept-ranges") == "bytes"
    assert whole.header("referrer-policy") == "no-referrer"  # the token is in the URL
    disposition = whole.header("content-disposition")
    assert disposition is not None
    assert disposition.startswith("attachment;")
    assert 'filename="big.bin"' in disposition

    # `-r 5000000-` is about 95 MiB: compared by hash, through a file, like the whole body.
    for curl_range, start, end in [
        ("0-1023", 0, 1024),
        ("5000000-", 5_000_000, size),
        ("-500", size - 500, size),
    ]:
        body_path = tmp_path / "range.bin"
        part = run_curl(curl, tmp_path, "-r", curl_range, url, output=body_path)
        assert part.returncode == 0, part.stderr
        assert part.status == 206, curl_range
        assert part.header("content-range") == f"bytes {start}-{end - 1}/{size}", curl_range
        assert part.header("content-length") == str(end - start), curl_range
        assert part.header("etag") == etag
        assert body_path.stat().st_size == end - start, curl_range
        if end - start <= 1024:
            assert body_path.read_bytes() == slice_of(big_file.path, start, end), curl_range
        else:
            assert sha256_of(body_path) == slice_sha256(big_file.path, start, end), curl_range
        body_path.unlink()

    head = run_curl(curl, tmp_path, "-I", url)
    assert head.returncode == 0, head.stderr
    assert head.status == 200
    assert head.header("content-length") == str(size)
    assert head.header("etag") == etag
    assert head.header("referrer-policy") == "no-referrer"

    # Caches along the way can revalidate a link like any download.
    cached = run_curl(curl, tmp_path, "-H", f"If-None-Match: {etag}", url)
    assert cached.status == 304
    assert cached.body == b""

    beyond = run_curl(curl, tmp_path, "-r", f"{size}-", url)
    assert beyond.status == 416
    assert beyond.header("content-range") == f"bytes */{size}"

    # The file itself stays private: without the link, an anonymous caller gets nothing.
    anonymous = run_curl(curl, tmp_path, server.url(file["content_url"]))
    assert_error(anonymous, 401, "not_authenticated")


def test_a_tampered_or_foreign_token_is_403_invalid_link(
    server: RunningServer, editor: User, curl: str, tmp_path: Path
) -> None:
    local = tmp_path / "note.txt"
    local.write_bytes(b"shared by link only\n")
    file = upload_raw(server, editor, curl, tmp_path, local, "note.txt")
    other = upload_raw(server, editor, curl, tmp_path, local, "other.txt")
    token = token_of(make_link(server, editor, file["id"], expires_in=600))
    other_token = token_of(make_link(server, editor, other["id"], expires_in=600))
    payload, signature = token.split(".")
    other_payload, other_signature = other_token.split(".")
    assert payload != other_payload

    # The genuine link works, so each 403 below is down to the one change made.
    genuine = run_curl(curl, tmp_path, server.url(SHARED_PREFIX + token))
    assert genuine.status == 200
    assert genuine.body == local.read_bytes()

    # Mid-string characters: the last one of a segment may only carry spare bits.
    tampered = {
        "signature changed": f"{payload}.{changed_at(signature, len(signature) // 2)}",
        "payload changed": f"{changed_at(payload, len(payload) // 2)}.{signature}",
        "another link's signature": f"{payload}.{other_signature}",
    }
    for what, bad in tampered.items():
        assert bad != token
        for method in ([], ["-I"]):
            result = run_curl(curl, tmp_path, *method, server.url(SHARED_PREFIX + bad))
            assert result.status == 403, what
            if not method:  # a HEAD answer has no body to read the code from
                assert_error(result, 403, "invalid_link")


def test_a_link_dies_with_its_content_its_file_or_its_time(
    server: RunningServer, editor: User, curl: str, tmp_path: Path
) -> None:
    local = tmp_path / "draft.txt"
    local.write_bytes(b"first draft\n")
    file = upload_raw(server, editor, curl, tmp_path, local, "draft.txt")
    link = make_link(server, editor, file["id"], expires_in=600)
    assert run_curl(curl, tmp_path, server.url(link)).status == 200

    # New content voids the link: it was made for the bytes it was made for.
    with server.client(editor.token) as client:
        replaced = client.put(f"/api/v1/files/{file['id']}/content", content=b"second draft\n")
        assert replaced.status_code == 200, replaced.text
    assert_error(run_curl(curl, tmp_path, server.url(link)), 403, "link_outdated")

    # A fresh link serves the new bytes until the file is gone.
    fresh = make_link(server, editor, file["id"], expires_in=600)
    assert run_curl(curl, tmp_path, server.url(fresh)).body == b"second draft\n"
    with server.client(editor.token) as client:
        assert client.delete(f"/api/v1/files/{file['id']}").status_code == 204
    assert_error(run_curl(curl, tmp_path, server.url(fresh)), 404, "file_not_found")

    # The shortest link there is: it expires within a second or two.
    file = upload_raw(server, editor, curl, tmp_path, local, "draft.txt")
    short = make_link(server, editor, file["id"], expires_in=1)
    wait_for(
        lambda: run_curl(curl, tmp_path, server.url(short)).status == 403,
        timeout=5,
        what="the one-second link to expire",
        interval=0.2,
    )
    assert_error(run_curl(curl, tmp_path, server.url(short)), 403, "link_expired")


def test_no_token_reaches_the_logs_while_the_access_log_shows_the_template(
    server: RunningServer, editor: User, curl: str, tmp_path: Path
) -> None:
    local = tmp_path / "logged.bin"
    data = secrets.token_bytes(4096)
    local.write_bytes(data)
    file = upload_raw(server, editor, curl, tmp_path, local, "logged.bin")
    link = make_link(server, editor, file["id"], expires_in=600)
    share_token = token_of(link)
    # A token of its own, sent only in query strings: if it shows up, a query was logged.
    query_token = login(server.base_url, editor.username, editor.password)
    bogus_token = "eyJ" + secrets.token_urlsafe(40)
    content = file["content_url"]
    tampered = SHARED_PREFIX + changed_at(share_token, len(share_token) // 4)

    # (curl args, the path the access log must show, the status it must show)
    requests: list[tuple[list[str], str, str, int]] = [
        (["GET"], link, f"GET {SHARED_TEMPLATE}", 200),
        (["HEAD"], link, f"HEAD {SHARED_TEMPLATE}", 200),
        (["GET", "-r", "0-99"], link, f"GET {SHARED_TEMPLATE}", 206),
        (["GET"], tampered, f"GET {SHARED_TEMPLATE}", 403),
        # A mistyped link matches no route (a redirect, a 404): its token stays out too.
        (["GET"], link + "/", f"GET {SHARED_TEMPLATE}", 307),
        (["GET"], link + "/x", f"GET {SHARED_TEMPLATE}", 404),
        (["GET"], f"{content}?access_token={query_token}", f"GET {content}", 200),
        (["GET"], f"{content}?access_token={bogus_token}", f"GET {content}", 401),
        (
            ["GET"],
            f"/api/v1/archive?id={file['id']}&access_token={query_token}",
            "GET /api/v1/archive",
            200,
        ),
    ]
    request_ids: list[tuple[str, str, int]] = []
    for (method, *args), target, logged, status in requests:
        request_id = "e2e-" + secrets.token_hex(8)
        method_args = ["-I"] if method == "HEAD" else []
        result = run_curl(
            curl, tmp_path, *method_args, *args, "-H", f"X-Request-ID: {request_id}",
            server.url(target),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.status == status, (target, result.body[:2000])
        if target.startswith(content) and status == 200:
            assert result.body == data  # the query token really was accepted
        request_ids.append((request_id, logged, status))

    # The access line is written once the response is done; wait for the last one.
    last_id = request_ids[-1][0]
    wait_for(
        lambda: f"id={last_id}" in server.stderr_path.read_text(errors="replace"),
        timeout=10,
        what="the last request's access log line",
    )
    # run_server sends stdout and stderr to these two files in the server's directory.
    stdout_path = server.root / "server.stdout.log"
    logs = {
        server.stderr_path.name: server.stderr_path.read_text(errors="replace"),
        stdout_path.name: stdout_path.read_text(errors="replace") if stdout_path.exists() else "",
    }
    for name, text in logs.items():
        for what, secret in [
            ("share token", share_token),
            ("share token's signature", share_token.split(".")[1]),
            ("tampered share token", tampered.removeprefix(SHARED_PREFIX)),
            ("access token sent as ?access_token=", query_token),
            ("invalid access token sent as ?access_token=", bogus_token),
            ("header access token", editor.token),
        ]:
            assert secret not in text, f"the {what} is in {name}"
        assert "access_token" not in text, f"a query string is in {name}"
        # Tokens of the module's other tests (and any other token) too.
        assert not TOKEN_LIKE_RE.findall(text), f"something like a token is in {name}"

    # One access line per request, with the full path (the template for share links).
    stderr_lines = logs[server.stderr_path.name].splitlines()
    wrong: list[str] = []
    for request_id, logged, status in request_ids:
        (line,) = [line for line in stderr_lines if line.endswith(f" id={request_id}")]
        if f'"{logged}" {status} ' not in line:
            wrong.append(f"expected {logged!r} {status} in: {line}")
    assert not wrong, "\n".join(wrong)
