from __future__ import annotations

import base64
import hashlib

import pytest
from starlette.datastructures import Headers

from filesvc.tus import headers
from filesvc.tus.errors import InvalidTusHeader, UnsupportedVersion


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_metadata_round_trip() -> None:
    value = f"filename {_b64('résumé.pdf')},empty,visibility {_b64('internal')}"
    parsed = headers.parse_metadata(value)
    assert parsed == {"filename": "résumé.pdf", "empty": None, "visibility": "internal"}
    assert headers.parse_metadata(headers.encode_metadata(parsed)) == parsed


@pytest.mark.parametrize(
    "value",
    [
        "filename not*base64",
        f"filename {_b64('a')},filename {_b64('b')}",
        f"filename {_b64('a')} extra",
        f",filename {_b64('a')}",
        "filename " + base64.b64encode(bytes([0xFF, 0xFE])).decode(),
    ],
)
def test_bad_metadata_is_rejected(value: str) -> None:
    with pytest.raises(InvalidTusHeader):
        headers.parse_metadata(value)


def test_empty_metadata_is_no_pairs() -> None:
    assert headers.parse_metadata(None) == {}
    assert headers.parse_metadata("  ") == {}


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
def test_checksum_header(algorithm: str) -> None:
    digest = hashlib.new(algorithm, b"chunk").digest()
    value = f"{algorithm} {base64.b64encode(digest).decode()}"
    checksum = headers.chunk_checksum(Headers({"upload-checksum": value}))
    assert checksum is not None
    assert checksum.digest == digest
    computed = checksum.new_hash()
    computed.update(b"chunk")
    assert computed.digest() == digest


@pytest.mark.parametrize("value", ["crc32 AAAA", "sha1 !!!", "sha1"])
def test_bad_checksum_header(value: str) -> None:
    if value == "sha1":
        # An empty digest is valid base64 but can never match: a 460, not a 400.
        checksum = headers.chunk_checksum(Headers({"upload-checksum": value}))
        assert checksum is not None
        assert checksum.digest == b""
        return
    with pytest.raises(InvalidTusHeader):
        headers.chunk_checksum(Headers({"upload-checksum": value}))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"upload-length": "0"}, 0),
        ({"upload-length": "42"}, 42),
        ({"upload-defer-length": "1"}, None),
    ],
)
def test_upload_length(given: dict[str, str], expected: int | None) -> None:
    assert headers.upload_length(Headers(given)) == expected


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"upload-length": "-1"},
        {"upload-length": "1e3"},
        {"upload-length": "\u00b2"},  # a digit to str.isdigit (latin-1 ²), not to int()
        {"upload-length": "9" * 20},
        {"upload-length": "1", "upload-defer-length": "1"},
    ],
)
def test_bad_upload_length(given: dict[str, str]) -> None:
    with pytest.raises(InvalidTusHeader):
        headers.upload_length(Headers(given))


def test_version_check() -> None:
    headers.check_version(Headers({"tus-resumable": "1.0.0"}))
    with pytest.raises(UnsupportedVersion):
        headers.check_version(Headers({"tus-resumable": "0.2.2"}))


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        ("application/offset+octet-stream", True),
        ("Application/Offset+Octet-Stream; charset=x", True),
        ("application/octet-stream", False),
        (None, False),
    ],
)
def test_offset_stream_content_type(content_type: str | None, ok: bool) -> None:
    assert headers.is_offset_stream(content_type) is ok
