from __future__ import annotations

import base64
import hashlib

import pytest
from starlette.datastructures import Headers

from filesvc.files.checksums import expected_sha256
from filesvc.files.errors import InvalidChecksumHeader

DIGEST = hashlib.sha256(b"hello").digest()
HEX = DIGEST.hex()
B64 = base64.b64encode(DIGEST).decode()
OTHER = hashlib.sha256(b"other").digest()
SHA512_B64 = base64.b64encode(hashlib.sha512(b"hello").digest()).decode()


def expected(**headers: str) -> str | None:
    return expected_sha256(Headers({k.replace("_", "-"): v for k, v in headers.items()}))


def test_no_headers() -> None:
    assert expected() is None


@pytest.mark.parametrize("value", [HEX, HEX.upper(), f"  {HEX}  "])
def test_x_checksum_hex(value: str) -> None:
    assert expected(X_Checksum_SHA256=value) == HEX


@pytest.mark.parametrize(
    "value",
    [
        f"sha-256=:{B64}:",
        f"sha-256 = :{B64}: ",
        f"sha-512=:{SHA512_B64}:, sha-256=:{B64}:",
        f"sha-256=:{B64}:,sha-512=:{SHA512_B64}:",
        f"md5=:AAAA:, sha-256=:{B64}:",
    ],
)
def test_content_digest(value: str) -> None:
    assert expected(Content_Digest=value) == HEX


@pytest.mark.parametrize("value", [f"sha-512=:{SHA512_B64}:", "md5=:AAAA:, sha=:AAAA:"])
def test_content_digest_without_sha256(value: str) -> None:
    assert expected(Content_Digest=value) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Checksum-SHA256": ""},
        {"X-Checksum-SHA256": "xyz"},
        {"X-Checksum-SHA256": HEX[:-1]},  # too short
        {"X-Checksum-SHA256": HEX + "0"},  # too long
        {"X-Checksum-SHA256": HEX[:-1] + "g"},
        {"X-Checksum-SHA256": B64},  # base64 where hex belongs
        {"X-Checksum-SHA256": HEX + "\n" + HEX},
        {"Content-Digest": ""},
        {"Content-Digest": "sha-256"},
        {"Content-Digest": f"sha-256={B64}"},  # no colons
        {"Content-Digest": f"sha-256=:{B64}"},
        {"Content-Digest": "sha-256=:not base64!:"},
        {"Content-Digest": "sha-256=:AAA:"},  # bad padding
        {"Content-Digest": "sha-256=::"},
        {"Content-Digest": f"sha-256=:{base64.b64encode(DIGEST[:16]).decode()}:"},
        {"Content-Digest": f"sha-256=:{base64.b64encode(DIGEST + b'x').decode()}:"},
        {"Content-Digest": f"sha-256=:{B64}: garbage"},
        {"Content-Digest": f"sha-512=:{SHA512_B64}:, nonsense"},
    ],
)
def test_malformed(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidChecksumHeader) as excinfo:
        expected_sha256(Headers(headers))
    assert excinfo.value.status_code == 400
    assert excinfo.value.code == "invalid_checksum"


def test_both_headers_agreeing() -> None:
    assert expected(X_Checksum_SHA256=HEX.upper(), Content_Digest=f"sha-256=:{B64}:") == HEX


def test_both_headers_disagreeing() -> None:
    digest = f"sha-256=:{base64.b64encode(OTHER).decode()}:"
    with pytest.raises(InvalidChecksumHeader):
        expected(X_Checksum_SHA256=HEX, Content_Digest=digest)


def test_x_checksum_with_content_digest_of_other_algorithms() -> None:
    assert expected(X_Checksum_SHA256=HEX, Content_Digest=f"sha-512=:{SHA512_B64}:") == HEX


def test_plain_mapping_of_lowercase_names() -> None:
    # Part headers reach it as a dict with lower-case names.
    assert expected_sha256({"content-digest": f"sha-256=:{B64}:"}) == HEX
    assert expected_sha256({"x-checksum-sha256": HEX}) == HEX
