"""Range headers a client may get wrong or abuse: never a 5xx, never a slow answer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from .server import RunningServer, User

pytestmark = pytest.mark.e2e

SIZE = 4096
# A client-side deadline: a server that chews on a header for longer has failed.
TIMEOUT = httpx.Timeout(5.0)


@dataclass(frozen=True)
class Stored:
    content_url: str
    data: bytes
    etag: str


@pytest.fixture(scope="module")
def stored(server_process: RunningServer, editor: User) -> Stored:
    data = os.urandom(SIZE)
    with server_process.client(editor.token) as client:
        response = client.put("/api/v1/files/raw/ranges.bin", content=data)
    assert response.status_code == 201, response.text
    body = response.json()
    return Stored(body["content_url"], data, f'"{body["sha256"]}"')


@pytest.fixture
def client(server: RunningServer, editor: User) -> Iterator[httpx.Client]:
    with server.client(editor.token, timeout=5.0) as client:
        yield client


def every_other_byte(count: int) -> str:
    return "bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in range(count))


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(every_other_byte(500), id="500-ranges"),
        pytest.param("bytes=" + ",".join(["0-0"] * 500), id="500-identical-ranges"),
        pytest.param("bytes=" + ",".join(["0-"] * 500), id="500-whole-body-ranges"),
        pytest.param("bytes=" + ",".join(["-1"] * 500), id="500-suffix-ranges"),
        pytest.param("bytes=abc", id="not-a-number"),
        pytest.param("bytes=5-1", id="end-before-start"),
        pytest.param("bytes=-", id="just-a-dash"),
        pytest.param("bytes=", id="empty"),
        pytest.param("bytes=0-0,,,", id="empty-members"),
        pytest.param("bytes=1e3-2e3", id="exponent"),
        pytest.param("bytes=" + "9" * 5000 + "-", id="huge-number"),
        # Latin-1 superscripts: str.isdigit() says yes, int() says no.
        pytest.param("bytes=²-³".encode("latin-1"), id="superscript-digits"),
        pytest.param("items=0-1", id="other-unit"),
        pytest.param("bytes 0-1", id="no-equals-sign"),
    ],
)
def test_an_abusive_range_gets_an_answer_not_an_error(
    server: RunningServer, stored: Stored, client: httpx.Client, header: str | bytes
) -> None:
    raw = header if isinstance(header, bytes) else header.encode("latin-1")
    response = client.get(stored.content_url, headers={b"Range": raw}, timeout=TIMEOUT)

    assert response.status_code < 500, response.text[:2000]
    if response.status_code == 200:  # the header was ignored: the whole body, intact
        assert response.content == stored.data
        assert response.headers["etag"] == stored.etag
    elif response.status_code == 416:
        assert response.headers["content-range"] == f"bytes */{SIZE}"
    else:
        assert response.status_code == 206, response.status_code
    server.assert_serving()


def test_a_few_ranges_come_back_as_multipart_byteranges(
    stored: Stored, client: httpx.Client
) -> None:
    response = client.get(
        stored.content_url, headers={"Range": "bytes=0-9,100-109,-10"}, timeout=TIMEOUT
    )

    assert response.status_code == 206
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.partition("boundary=")[2].encode()
    parts = response.content.split(b"--" + boundary)
    assert parts[-1] == b"--"
    received = {}
    for raw in parts[1:-1]:
        # Each part is CRLF, its head, CRLF CRLF, its bytes, CRLF. Only that framing is
        # taken off: strip() would also eat data bytes that happen to be CR or LF.
        assert raw.startswith(b"\r\n")
        assert raw.endswith(b"\r\n")
        head, _, data = raw[2:-2].partition(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n"))
        received[fields[b"Content-Range"].decode()] = data
    assert received == {
        f"bytes 0-9/{SIZE}": stored.data[0:10],
        f"bytes 100-109/{SIZE}": stored.data[100:110],
        f"bytes {SIZE - 10}-{SIZE - 1}/{SIZE}": stored.data[-10:],
    }


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", slice(0, 100)),
        ("bytes=-100", slice(-100, None)),
        ("bytes=4000-", slice(4000, None)),
    ],
)
def test_a_single_range_is_206(
    stored: Stored, client: httpx.Client, header: str, expected: slice
) -> None:
    response = client.get(stored.content_url, headers={"Range": header}, timeout=TIMEOUT)

    assert response.status_code == 206
    assert response.content == stored.data[expected]
    assert response.headers["content-length"] == str(len(stored.data[expected]))


@pytest.mark.parametrize("header", ["bytes=4096-", "bytes=5000-6000", "bytes=4096-4096,9000-"])
def test_a_range_past_the_end_is_416(stored: Stored, client: httpx.Client, header: str) -> None:
    response = client.get(stored.content_url, headers={"Range": header}, timeout=TIMEOUT)

    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{SIZE}"
    assert response.json()["code"] == "range_not_satisfiable"
