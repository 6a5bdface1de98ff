"""File names are display text: cleaned for storage and headers, never used as paths."""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from urllib.parse import quote

MAX_NAME_CHARS = 255
DEFAULT_NAME = "unnamed"
GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}
_CONTENT_TYPE_RE = re.compile(r"^[\w!#$&^.+-]+/[\w!#$&^.+-]+$", re.ASCII)


def clean_name(raw: str) -> str:
    """Drop control characters (NUL, CR, LF, …), trim, and cap the length.

    Slashes and dots are kept as given: the name is only ever shown, so
    `../../etc/passwd` is harmless text here.
    """
    name = "".join(ch for ch in raw if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"))
    name = unicodedata.normalize("NFC", name).strip()
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16 and stem:
            name = stem[: MAX_NAME_CHARS - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_NAME_CHARS]
    return name or DEFAULT_NAME


def resolve_content_type(declared: str | None, name: str) -> str:
    """The declared type unless it is empty or generic; then a guess from the name."""
    media_type = (declared or "").split(";", 1)[0].strip().lower()
    if (
        media_type in GENERIC_TYPES
        or not _CONTENT_TYPE_RE.match(media_type)
        or len(media_type) > 255
    ):
        guessed, _ = mimetypes.guess_type(name, strict=False)
        return guessed or "application/octet-stream"
    return media_type


def content_disposition(disposition: str, name: str) -> str:
    """`filename` with an ASCII fallback plus RFC 5987 `filename*` for the real name."""
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\' else "_" for ch in name)
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
