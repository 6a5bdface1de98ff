"""Download responses: validators, conditional requests and ranges, for every backend.

Local files up to a MiB are read in one thread hop and sent as one body; larger ones, and
ranges, go out as FileResponse. Other backends (S3) stream the object's body, with a
single range passed through to the store; `HEAD` and conditional requests are answered
from the row without touching the store; `redirect` answers 307 to a presigned URL. Whole
small files, once read, are answered from memory (blob_cache.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from filesvc.errors import error_responses
from filesvc.files.blob_cache import SmallBlobCache
from filesvc.files.models import File
from filesvc.files.names import content_disposition
from filesvc.files.ranges import parse_range
from filesvc.storage.base import (
    ByteRange,
    GetResult,
    LocalPaths,
    ObjectNotFound,
    PresignedGet,
    Storage,
    StorageError,
)
from filesvc.storage.errors import STORAGE_ERRORS
from filesvc.transfers.dependencies import TRANSFER_ERRORS

logger = logging.getLogger(__name__)

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
    **TRANSFER_ERRORS,
    **STORAGE_ERRORS,
}
# Only where `?redirect=true` is offered (a file's own content route).
REDIRECT_RESPONSE: dict[int | str, dict[str, Any]] = {
    307: {"description": "`?redirect=true` on S3: the bytes at a presigned URL (`Location`)."}
}


# Files up to this size are read whole in one thread hop (FileResponse takes one to open,
# one per read and one to close, and a task watching for a disconnect). It is the size
# FileResponse reads at once anyway, so no download holds more memory than before.
SMALL_FILE_BYTES = 1024 * 1024


class BlobFileResponse(FileResponse):
    # 1 MiB reads: Starlette's 64 KiB default spends more on thread hops than on I/O.
    chunk_size = SMALL_FILE_BYTES

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


def requested_range(
    request_headers: Headers, file: File, headers: dict[str, str]
) -> ByteRange | None:
    """The one range to send, or None for the whole body.

    Several ranges are answered with the whole body (RFC 9110 allows ignoring Range):
    a store can only send one range per request, and no client needs multipart/byteranges
    from a file service.
    """
    header = request_headers.get("range")
    if header is None:
        return None
    if_range = request_headers.get("if-range")
    if if_range is not None and if_range not in (etag_of(file), headers["last-modified"]):
        return None  # changed since the client's copy: send it all
    ranges = parse_range(header, file.size)
    if ranges is None or len(ranges) != 1:
        return None
    [(start, end)] = ranges
    return ByteRange(start, end)


class ObjectStreamResponse(StreamingResponse):
    """An object's bytes streamed from the store. Status, length and validators come from
    the row; the store is asked for the bytes only when they are to be sent, so `HEAD`
    never touches it. A failure before the first byte is an error reply; after it, the
    connection is cut (the body stays shorter than its Content-Length), never a short
    body that looks complete."""

    def __init__(
        self, storage: Storage, file: File, headers: dict[str, str], byte_range: ByteRange | None
    ) -> None:
        self._storage = storage
        self._key = file.storage_key
        self._range = byte_range
        headers = {**headers, "accept-ranges": "bytes"}
        if byte_range is None:
            status_code, self._length = 200, file.size
        else:
            status_code, self._length = 206, byte_range.length
            headers["content-range"] = f"bytes {byte_range.start}-{byte_range.end - 1}/{file.size}"
        headers["content-length"] = str(self._length)
        super().__init__(
            _nothing(), status_code=status_code, headers=headers, media_type=file.content_type
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD":
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        result = await self._storage.get(self._key, self._range)
        try:
            if result.range.length != self._length:
                raise StorageError(
                    f"object {self._key!r} has {result.meta.size} bytes, its row says otherwise"
                )
            request_id = scope.get("state", {}).get("request_id", "-")
            self.body_iterator = self._checked(result, request_id)
            await super().__call__(scope, receive, send)
        finally:
            await result.aclose()

    async def _checked(self, result: GetResult, request_id: str) -> AsyncIterator[bytes]:
        sent = 0
        try:
            async for chunk in result.chunks:
                sent += len(chunk)
                yield chunk
            if sent != self._length:
                raise StorageError(f"object {self._key!r} ended after {sent} bytes")
        except Exception as exc:
            # Raised on: the server then drops the connection mid-body.
            logger.error(
                "download of %s cut off after %d of %d bytes (request id %s): %s",
                self._key,
                sent,
                self._length,
                request_id,
                exc,
            )
            raise


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # an async generator with no items


async def file_response(
    storage: Storage,
    small_blobs: SmallBlobCache,
    file: File,
    request: Request,
    disposition: str,
    *,
    redirect: bool = False,
) -> Response:
    headers = download_headers(file, disposition)
    if (cached := not_modified(request.headers, file, headers)) is not None:
        return cached
    if redirect and isinstance(storage, PresignedGet):
        url = await storage.presigned_get_url(
            file.storage_key,
            content_type=file.content_type,
            disposition=headers["content-disposition"],
        )
        # The URL expires soon: no cache may keep this answer.
        return RedirectResponse(url, status_code=307, headers={"cache-control": "no-store"})
    whole = "range" not in request.headers
    if whole and (body := small_blobs.get(file.storage_key)) is not None:
        return _whole_body(file, headers, body)
    if not isinstance(storage, LocalPaths):
        if whole and request.method == "GET" and file.size <= small_blobs.max_item_bytes:
            body = await _read_whole_object(storage, file)
            small_blobs.put(file.storage_key, body)
            return _whole_body(file, headers, body)
        return ObjectStreamResponse(
            storage, file, headers, requested_range(request.headers, file, headers)
        )
    path = storage.local_path(file.storage_key)
    try:
        stat_result, body = await asyncio.to_thread(_stat_and_read_small, path)
    except FileNotFoundError:
        raise ObjectNotFound(file.storage_key) from None
    if body is not None and whole:
        small_blobs.put(file.storage_key, body)
        return _whole_body(file, headers, body)
    return BlobFileResponse(
        path, headers=headers, media_type=file.content_type, stat_result=stat_result
    )


def _whole_body(file: File, headers: dict[str, str], body: bytes) -> Response:
    headers = {**headers, "accept-ranges": "bytes", "content-length": str(len(body))}
    return Response(body, headers=headers, media_type=file.content_type)


async def _read_whole_object(storage: Storage, file: File) -> bytes:
    """A small object's bytes, read before the answer starts: a failure is an error reply."""
    result = await storage.get(file.storage_key, None)
    try:
        body = b"".join([chunk async for chunk in result.chunks])
    finally:
        await result.aclose()
    if len(body) != file.size:
        raise StorageError(
            f"object {file.storage_key!r} has {len(body)} bytes, its row says otherwise"
        )
    return body


def _stat_and_read_small(path: Path) -> tuple[os.stat_result, bytes | None]:
    """The file's stat, and its bytes if it is small (None otherwise): one thread hop."""
    with open(path, "rb") as f:
        stat_result = os.fstat(f.fileno())
        if stat_result.st_size > SMALL_FILE_BYTES:
            return stat_result, None
        body = f.read(SMALL_FILE_BYTES + 1)
    # Blobs never change once stored; a length that differs anyway goes the checked way.
    return stat_result, body if len(body) == stat_result.st_size else None
