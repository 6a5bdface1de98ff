"""A server's file name made safe to create in a local folder."""

from __future__ import annotations

import unicodedata

# Leaves room for the ".part" suffix within the usual 255-byte limit of a file name.
MAX_NAME_BYTES = 240
_RESERVED = set('<>:"|?*')


def safe_filename(name: str, fallback: str) -> str:
    """The last path component of `name`, without control characters, characters that
    Windows refuses, or leading dots (no hidden files, no `..`); `fallback` if nothing
    is left."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(
        "_" if ch in _RESERVED else ch
        for ch in unicodedata.normalize("NFC", name)
        if not unicodedata.category(ch).startswith("C")
    )
    name = name.strip().lstrip(".").rstrip(". ")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        if not (dot and stem and len(ext.encode("utf-8")) <= 16):
            stem, ext = name, ""
        budget = MAX_NAME_BYTES - len(ext.encode("utf-8")) - (1 if ext else 0)
        stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip(". ")
        name = f"{stem}.{ext}" if ext else stem
    return name or fallback
