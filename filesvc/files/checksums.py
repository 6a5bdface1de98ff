"""The SHA-256 a client says its bytes have: RFC 9530 Content-Digest or X-Checksum-SHA256."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from filesvc.files.errors import InvalidChecksumHeader

_HEX_RE = re.compile(r"^[0-9a-fA-F]{64}$")
# One dictionary member of a Content-Digest field: algorithm=:base64:
_DIGEST_MEMBER_RE = re.compile(r"^\s*([a-z0-9-]+)\s*=\s*:([A-Za-z0-9+/=]*):\s*$")


def _from_content_digest(value: str) -> str | None:
    for member in value.split(","):
        match = _DIGEST_MEMBER_RE.match(member)
        if match is None:
            raise InvalidChecksumHeader("Content-Digest must look like sha-256=:<base64>:")
        algorithm, encoded = match.groups()
        if algorithm != "sha-256":
            continue  # other algorithms are allowed; we only check the one we compute
        try:
            digest = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise InvalidChecksumHeader("Content-Digest sha-256 is not valid base64.") from None
        if len(digest) != 32:
            raise InvalidChecksumHeader("Content-Digest sha-256 must be 32 bytes.")
        return digest.hex()
    return None


def expected_sha256(headers: Mapping[str, str]) -> str | None:
    """The hex digest the client expects, or None if it sent no SHA-256."""
    expected: str | None = None
    if (checksum := headers.get("x-checksum-sha256")) is not None:
        if not _HEX_RE.match(checksum.strip()):
            raise InvalidChecksumHeader("X-Checksum-SHA256 must be 64 hex digits.")
        expected = checksum.strip().lower()
    if (digest_field := headers.get("content-digest")) is not None:
        from_digest = _from_content_digest(digest_field)
        if expected is not None and from_digest is not None and from_digest != expected:
            raise InvalidChecksumHeader("Content-Digest and X-Checksum-SHA256 disagree.")
        expected = expected or from_digest
    return expected
