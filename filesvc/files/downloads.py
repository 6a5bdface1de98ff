"""Download responses: validators, conditional requests and ranges on top of FileResponse."""

from __future__ import annotations

import asyncio
import os
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response

from filesvc.errors import error_responses
from filesvc.files.models import File
from filesvc.files.names import content_disposition
from filesvc.files.ranges import parse_range
from filesvc.storage.base import LocalPaths, ObjectNotFound, Storage, StorageError

# Types a browser could run as script in our origin: never served inline.
ACTIVE_TYPES = (
    "text/html",
    "image/svg+xml",
    "application/xhtml+xml",
    "text/xml",
    "application/xml",
)
ACTIVE_MARKERS = ("javascript", "ecmascript", "+xml", "html")

_BYTES = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
# OpenAPI for every route that answers with a file's bytes.
DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The whole file.", "content": _BYTES},
    206: {"description": "The requested range (`Content-Range`).", "content": _BYTES},
    304: {"description": "Not modified (`If-None-Match`, `If-Modified-Since`)."},
    **error_responses(404, 416),
}


class BlobFileResponse(FileResponse):
    # 1 MiB reads: Starlette's 64 KiB default spends more on thread hops than on I/O.
    chunk_size = 1024 * 1024

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        # One parser for every backend; an ignorable header means the whole body.
        return parse_range(http_range, file_size) or []


def etag_of(file: File) -> str:
    return f'"{file.sha256}"'


def can_render_inline(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type not in ACTIVE_TYPES and not any(m in media_type for m in ACTIVE_MARKERS)


def _etag_matches(header: str, etag: str) -> bool:
    # If-None-Match uses weak comparison: W/"x" matches "x".
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags


def _not_modified_since(header: str, file: File) -> bool:
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        return False
    return file.updated_at.replace(microsecond=0) <= since


def download_headers(file: File, disposition: str) -> dict[str, str]:
    if disposition == "inline" and not can_render_inline(file.content_type):
        disposition = "attachment"
    return {
        "etag": etag_of(file),
        "last-modified": format_datetime(file.updated_at, usegmt=True),
        "content-disposition": content_disposition(disposition, file.name),
        "x-content-type-options": "nosniff",
        # Even a stored HTML file opened directly cannot run script in our origin.
        "content-security-policy": "default-src 'none'; sandbox",
        "cache-control": "private, no-cache",
    }


def not_modified(request_headers: Headers, file: File, headers: dict[str, str]) -> Response | None:
    if_none_match = request_headers.get("if-none-match")
    if if_none_match is not None:
        matched = _etag_matches(if_none_match, etag_of(file))
    else:
        since = request_headers.get("if-modified-since")
        matched = since is not None and _not_modified_since(since, file)
    if not matched:
        return None
    keep = ("etag", "last-modified", "cache-control")
    return Response(status_code=304, headers={k: v for k, v in headers.items() if k in keep})


async def file_response(
    storage: Storage, file: File, request_headers: Headers, disposition: str
) -> Response:
    headers = download_headers(file, disposition)
    if (cached := not_modified(request_headers, file, headers)) is not None:
        return cached
    if not isinstance(storage, LocalPaths):
        raise StorageError(f"the {storage.name} backend cannot serve downloads yet")
    path = storage.local_path(file.storage_key)
    try:
        stat_result = await asyncio.to_thread(os.stat, path)
    except FileNotFoundError:
        raise ObjectNotFound(file.storage_key) from None
    return BlobFileResponse(
        path, headers=headers, media_type=file.content_type, stat_result=stat_result
    )
