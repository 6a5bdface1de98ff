"""The tus request headers, parsed and checked: versions, lengths, offsets, metadata, checksums."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING

from filesvc.tus.errors import TUS_VERSION, InvalidTusHeader, UnsupportedVersion

if TYPE_CHECKING:
    from hashlib import _Hash

OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "checksum",
    "expiration",
)
CHECKSUM_ALGORITHMS: dict[str, Callable[[], _Hash]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "md5": hashlib.md5,
}
MAX_METADATA_HEADER = 16 * 1024
_MAX_INT_DIGITS = 19  # below 2**63: fits a BIGINT


def check_version(headers: Mapping[str, str]) -> None:
    if headers.get("tus-resumable") != TUS_VERSION:
        raise UnsupportedVersion()


def _non_negative(name: str, value: str) -> int:
    if not value.isdigit() or not value.isascii() or len(value) > _MAX_INT_DIGITS:
        raise InvalidTusHeader(f"`{name}` must be a non-negative integer.")
    return int(value)


def upload_length(headers: Mapping[str, str]) -> int | None:
    """Upload-Length, or None with `Upload-Defer-Length: 1`; exactly one must be given."""
    value = headers.get("upload-length")
    deferred = headers.get("upload-defer-length")
    if value is not None and deferred is not None:
        raise InvalidTusHeader("Send Upload-Length or Upload-Defer-Length, not both.")
    if value is not None:
        return _non_negative("Upload-Length", value)
    if deferred != "1":
        raise InvalidTusHeader("Send Upload-Length, or Upload-Defer-Length: 1.")
    return None


def optional_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("upload-length")
    return None if value is None else _non_negative("Upload-Length", value)


def upload_offset(headers: Mapping[str, str]) -> int:
    value = headers.get("upload-offset")
    if value is None:
        raise InvalidTusHeader("Send Upload-Offset.")
    return _non_negative("Upload-Offset", value)


def is_offset_stream(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == OFFSET_CONTENT_TYPE


def parse_metadata(value: str | None) -> dict[str, str | None]:
    """`key base64value, key2, …` → {key: decoded text or None}."""
    if not value or not value.strip():
        return {}
    if len(value) > MAX_METADATA_HEADER:
        raise InvalidTusHeader(f"Upload-Metadata is longer than {MAX_METADATA_HEADER} bytes.")
    pairs: dict[str, str | None] = {}
    for item in value.split(","):
        parts = item.strip().split(" ")
        key = parts[0]
        if not key or len(parts) > 2 or not key.isascii() or key in pairs:
            raise InvalidTusHeader("Upload-Metadata must be `key base64value` pairs, keys unique.")
        if len(parts) == 1:
            pairs[key] = None
            continue
        try:
            pairs[key] = base64.b64decode(parts[1], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidTusHeader(
                f"The Upload-Metadata value of {key!r} is not base64 of UTF-8 text."
            ) from None
    return pairs


def encode_metadata(pairs: Mapping[str, str | None]) -> str:
    return ",".join(
        key if value is None else f"{key} {base64.b64encode(value.encode()).decode()}"
        for key, value in pairs.items()
    )


@dataclass(frozen=True, slots=True)
class ChunkChecksum:
    algorithm: str
    digest: bytes

    def new_hash(self) -> _Hash:
        return CHECKSUM_ALGORITHMS[self.algorithm]()


def chunk_checksum(headers: Mapping[str, str]) -> ChunkChecksum | None:
    """Upload-Checksum: `<algorithm> <base64 digest>`; an unknown algorithm is a 400."""
    value = headers.get("upload-checksum")
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise InvalidTusHeader(
            f"Upload-Checksum algorithm must be one of {', '.join(CHECKSUM_ALGORITHMS)}."
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise InvalidTusHeader("The Upload-Checksum digest is not base64.") from None
    return ChunkChecksum(algorithm, digest)


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)
