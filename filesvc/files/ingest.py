"""Receiving uploads: socket bytes → multipart parser → hasher and size counter → storage.

Everything here streams. Each file goes into its own create-only writer under a
server-generated key, and nothing becomes visible until the caller commits a row for it;
on any failure (bad input, checksum, size, client gone, cancellation) every blob written
so far is removed before the error propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request

from filesvc.files.checksums import expected_sha256
from filesvc.files.errors import (
    ChecksumMismatch,
    InvalidField,
    MissingFilePart,
    TooManyFiles,
    UploadIncomplete,
)
from filesvc.files.limits import ByteBudget, UploadLimits
from filesvc.files.multipart import MultipartReader, PartData, PartEnd, PartStart
from filesvc.files.names import resolve_content_type
from filesvc.storage.base import BlobWriter, Storage

# Bytes handed to the hashing and writing threads at a time: big enough that the thread
# hop costs nothing, small enough that memory stays flat.
BATCH_BYTES = 1024 * 1024
# Multipart framing allowed on top of the file bytes before Content-Length alone is a 413.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 100
FILE_FIELD = "file"
FORM_FIELDS = ("name", "visibility", "metadata")


def new_storage_key() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class StoredBlob:
    key: str
    size: int
    sha256: str
    filename: str | None
    content_type: str | None


class BlobSink:
    """Hashes and stores one file, overlapping the work on one batch with receiving the next.

    The hash and the write of a batch run in threads (hashlib and file writes release the
    GIL), so parsing, hashing and writing use both cores. At most one batch is in flight,
    which keeps the writer's calls in order and memory bounded.
    """

    def __init__(self, writer: BlobWriter, budget: ByteBudget) -> None:
        self.writer = writer
        self.size = 0
        self._budget = budget
        self._hash = hashlib.sha256()
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._in_flight: asyncio.Future[None] | None = None

    async def write(self, data: bytes) -> None:
        self._budget.spend(len(data))
        self.size += len(data)
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= BATCH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        await self._wait_in_flight()
        if self._buffered:
            batch = b"".join(self._buffer)
            self._buffer.clear()
            self._buffered = 0
            self._in_flight = asyncio.ensure_future(self._store(batch))

    async def _store(self, batch: bytes) -> None:
        # return_exceptions: both threads must be done before anyone closes the writer.
        results = await asyncio.gather(
            asyncio.to_thread(self._hash.update, batch),
            self.writer.write(batch),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _wait_in_flight(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            # Shielded: a cancelled request must not abandon a thread still writing.
            await asyncio.shield(in_flight)

    async def finish(self, expected: str | None) -> str:
        """Flush, verify the checksum, commit the blob; return its SHA-256 hex digest."""
        await self._flush()
        await self._wait_in_flight()
        digest = self._hash.hexdigest()
        if expected is not None and expected != digest:
            raise ChecksumMismatch()
        await self.writer.commit()
        return digest

    async def abort(self) -> None:
        try:
            # Its error, if any, is a consequence of the one already propagating.
            with contextlib.suppress(Exception):
                await self._wait_in_flight()
        finally:
            await self.writer.abort()


async def discard_blobs(storage: Storage, keys: Iterable[str]) -> None:
    """Remove blobs whose rows never committed; shielded so cancellation cannot skip it."""

    async def _discard() -> None:
        for key in keys:
            await storage.delete(key)

    await asyncio.shield(_discard())


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise UploadIncomplete("The client disconnected before the upload finished.") from None


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


async def receive_raw(
    request: Request, storage: Storage, limits: UploadLimits, name: str
) -> StoredBlob:
    """Store a raw request body (Content-Length or chunked) as one blob."""
    limits.check_type(resolve_content_type(request.headers.get("content-type"), name))
    declared = _declared_length(request)
    if declared is not None:
        limits.check_size(declared)
    expected = expected_sha256(request.headers)
    sink = BlobSink(await storage.open_writer(new_storage_key()), ByteBudget(limits))
    try:
        async for chunk in _body(request):
            await sink.write(chunk)
        digest = await sink.finish(expected)
    except BaseException:
        await sink.abort()
        raise
    return StoredBlob(
        key=sink.writer.key,
        size=sink.size,
        sha256=digest,
        filename=None,
        content_type=request.headers.get("content-type"),
    )


@dataclass(slots=True)
class ReceivedForm:
    blobs: list[StoredBlob] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


class _FieldBuffer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.value = bytearray()

    def write(self, data: bytes) -> None:
        self.value += data
        if len(self.value) > MAX_FIELD_BYTES:
            raise InvalidField(
                f"The form field {self.name!r} is longer than {MAX_FIELD_BYTES} bytes."
            )


async def receive_form(
    request: Request, storage: Storage, limits: UploadLimits, *, max_files: int
) -> ReceivedForm:
    """Store every `file` part of a multipart body and collect the known text fields.

    With `max_files == 1`, checksum headers on the request describe that one file; a part
    may always carry its own `Content-Digest` or `X-Checksum-SHA256` header.
    """
    declared = _declared_length(request)
    if declared is not None:
        limits.check_size(max(declared - MULTIPART_OVERHEAD_BYTES, 0))
    reader = MultipartReader(request.headers.get("content-type"))
    request_checksum = expected_sha256(request.headers) if max_files == 1 else None
    budget = ByteBudget(limits)
    form = ReceivedForm()
    sink: BlobSink | None = None
    part: PartStart | None = None
    field_buffer: _FieldBuffer | None = None
    try:
        async for chunk in _body(request):
            for event in reader.feed(chunk):
                if isinstance(event, PartStart):
                    if reader.parts_started > MAX_PARTS:
                        raise InvalidField(f"A form may have at most {MAX_PARTS} parts.")
                    part = event
                    if event.name == FILE_FIELD:
                        if len(form.blobs) >= max_files:
                            raise TooManyFiles(f"Send at most {max_files} `file` part(s).")
                        # Early, before any byte is stored; checked again on the final name.
                        limits.check_type(
                            resolve_content_type(event.content_type, event.filename or "")
                        )
                        sink = BlobSink(await storage.open_writer(new_storage_key()), budget)
                    elif event.name in FORM_FIELDS:
                        field_buffer = _FieldBuffer(event.name)
                elif isinstance(event, PartData):
                    if sink is not None:
                        await sink.write(event.data)
                    elif field_buffer is not None:
                        field_buffer.write(event.data)
                elif isinstance(event, PartEnd):
                    if sink is not None and part is not None:
                        expected = expected_sha256(part.headers) or request_checksum
                        digest = await sink.finish(expected)
                        form.blobs.append(
                            StoredBlob(
                                sink.writer.key, sink.size, digest, part.filename, part.content_type
                            )
                        )
                        sink = None
                    elif field_buffer is not None:
                        form.fields[field_buffer.name] = field_buffer.value.decode(
                            "utf-8", "replace"
                        )
                        field_buffer = None
            if reader.ended:
                break  # anything after the closing boundary is ignored, not read
        reader.finish()
        if not form.blobs:
            raise MissingFilePart()
    except BaseException:
        if sink is not None:
            await sink.abort()
        await discard_blobs(storage, [blob.key for blob in form.blobs])
        raise
    return form


def parse_metadata_field(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidField("`metadata` must be a JSON object.") from None
    if not isinstance(value, dict):
        raise InvalidField("`metadata` must be a JSON object.")
    return value
