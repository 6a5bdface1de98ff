"""Receiving uploads: socket bytes → progress counter → multipart parser → hasher and size
counter → storage.

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
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from pydantic import ValidationError
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
from filesvc.files.models import Visibility
from filesvc.files.multipart import MultipartReader, PartData, PartEnd, PartStart
from filesvc.files.names import resolve_content_type
from filesvc.files.schemas import FileUpdate
from filesvc.storage.base import BlobWriter, HashingWriter, Storage
from filesvc.storage.keys import new_storage_key

# Bytes handed to the hashing and writing threads at a time: big enough that the thread
# hop costs nothing, small enough that memory stays flat.
BATCH_BYTES = 1024 * 1024
# Multipart framing allowed on top of the file bytes before Content-Length alone is a 413.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024
FILE_FIELD = "file"
FORM_FIELDS = ("name", "visibility", "metadata")


class Progress(Protocol):
    """Told of every body chunk as it is read from the socket (transfers/service.py)."""

    async def advance(self, count: int) -> None: ...


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
    which keeps the writer's calls in order and memory bounded. A writer that writes in a
    thread of its own (HashingWriter: local disk) takes the hash too, and the batch as the
    list of chunks it is: one thread job per batch, no copy, and one job for a body
    of up to a batch (its bytes, the hash check and the commit; for a small body only its
    fsyncs, the rest on the loop: storage/local.py, INLINE_BYTES).
    """

    def __init__(self, writer: BlobWriter, budget: ByteBudget) -> None:
        self.writer = writer
        self.size = 0
        self._budget = budget
        self._hash = hashlib.sha256()
        self._hashing = _hashing_writer(writer)
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._in_flight: asyncio.Future[None] | None = None

    async def write(self, data: bytes) -> None:
        self._budget.spend(len(data))
        self.size += len(data)
        if self._buffered >= BATCH_BYTES:
            # A full batch goes once more bytes come: the last one goes with the commit,
            # so a body of exactly one batch (a 1 MiB upload) is one job, not two.
            await self._flush()
        self._buffer.append(data)
        self._buffered += len(data)

    def _take_buffer(self) -> list[bytes]:
        chunks, self._buffer = self._buffer, []
        self._buffered = 0
        return chunks

    async def _flush(self) -> None:
        await self._wait_in_flight()
        if self._buffered:
            self._in_flight = asyncio.ensure_future(self._store(self._take_buffer()))

    async def _store(self, chunks: list[bytes]) -> None:
        if self._hashing is not None:
            await self._hashing.write_hashed(chunks, self._hash)
            return
        batch = b"".join(chunks)
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

        def verify(digest: str) -> None:
            if expected is not None and expected != digest:
                raise ChecksumMismatch()

        await self._wait_in_flight()
        if self._hashing is not None:
            await self._hashing.commit_hashed(self._take_buffer(), self._hash, verify)
            return self._hash.hexdigest()
        await self._flush()
        await self._wait_in_flight()
        digest = self._hash.hexdigest()
        verify(digest)
        await self.writer.commit()
        return digest

    async def abort(self) -> None:
        try:
            # Its error, if any, is a consequence of the one already propagating.
            with contextlib.suppress(Exception):
                await self._wait_in_flight()
        finally:
            await self.writer.abort()


# Whether each writer class is a HashingWriter: a runtime-checkable Protocol's isinstance
# walks its members every time, a cost every upload would pay on the event loop.
_HASHING_TYPES: dict[type, bool] = {}


def _hashing_writer(writer: BlobWriter) -> HashingWriter | None:
    hashing = _HASHING_TYPES.get(type(writer))
    if hashing is None:
        hashing = _HASHING_TYPES[type(writer)] = isinstance(writer, HashingWriter)
    return cast(HashingWriter, writer) if hashing else None


async def discard_blobs(storage: Storage, keys: Iterable[str]) -> None:
    """Remove blobs whose rows never committed; shielded so cancellation cannot skip it."""

    async def _discard() -> None:
        for key in keys:
            await storage.delete(key)

    await asyncio.shield(_discard())


async def _body(request: Request, progress: Progress) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            if chunk:
                await progress.advance(len(chunk))
                yield chunk
    except ClientDisconnect:
        raise UploadIncomplete("The client disconnected before the upload finished.") from None


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


async def receive_raw(
    request: Request, storage: Storage, limits: UploadLimits, name: str, progress: Progress
) -> StoredBlob:
    """Store a raw request body (Content-Length or chunked) as one blob."""
    limits.check_type(resolve_content_type(request.headers.get("content-type"), name))
    declared = _declared_length(request)
    if declared is not None:
        limits.check_size(declared)
    expected = expected_sha256(request.headers)
    sink = BlobSink(await storage.open_writer(new_storage_key()), ByteBudget(limits))
    try:
        async for chunk in _body(request, progress):
            await sink.write(chunk)
        digest = await sink.finish(expected)
    except BaseException:
        await sink.abort()
        raise
    content_type = request.headers.get("content-type")
    return StoredBlob(sink.writer.key, sink.size, digest, None, content_type)


@dataclass(slots=True)
class ReceivedForm:
    blobs: list[StoredBlob] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    def options(self) -> FileUpdate:
        """The `name`, `visibility` and `metadata` fields, validated like a PATCH body."""
        # Empty fields (as HTML forms and Swagger UI send them) mean "not given".
        name, visibility, metadata = (self.fields.get(key) or None for key in FORM_FIELDS)
        try:
            return FileUpdate(
                name=name,
                visibility=Visibility(visibility) if visibility else None,
                metadata=_parse_metadata(metadata) if metadata else None,
            )
        except ValueError as exc:  # includes pydantic's ValidationError
            detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise InvalidField(f"Invalid form field: {detail}") from None


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


class _FormReceiver:
    """Handles the reader's events: `file` parts to storage, known text fields to memory."""

    def __init__(
        self, storage: Storage, limits: UploadLimits, max_files: int, request_checksum: str | None
    ) -> None:
        self.form = ReceivedForm()
        self._storage = storage
        self._limits = limits
        self._budget = ByteBudget(limits)
        self._max_files = max_files
        self._request_checksum = request_checksum
        self._part: PartStart | None = None
        self._sink: BlobSink | None = None
        self._field: _FieldBuffer | None = None

    async def handle(self, event: PartStart | PartData | PartEnd) -> None:
        if isinstance(event, PartStart):
            await self._start(event)
        elif isinstance(event, PartData):
            await self._data(event.data)
        else:
            await self._end()

    async def _start(self, part: PartStart) -> None:
        self._part = part
        if part.name == FILE_FIELD:
            if len(self.form.blobs) >= self._max_files:
                raise TooManyFiles(f"Send at most {self._max_files} `file` part(s).")
            # Early, before any byte is stored; checked again on the final name.
            self._limits.check_type(resolve_content_type(part.content_type, part.filename or ""))
            writer = await self._storage.open_writer(new_storage_key())
            self._sink = BlobSink(writer, self._budget)
        elif part.name in FORM_FIELDS:
            self._field = _FieldBuffer(part.name)

    async def _data(self, data: bytes) -> None:
        if self._sink is not None:
            await self._sink.write(data)
        elif self._field is not None:
            self._field.write(data)

    async def _end(self) -> None:
        if self._sink is not None and self._part is not None:
            expected = expected_sha256(self._part.headers) or self._request_checksum
            digest = await self._sink.finish(expected)
            part, size = self._part, self._sink.size
            self.form.blobs.append(
                StoredBlob(self._sink.writer.key, size, digest, part.filename, part.content_type)
            )
            self._sink = None
        elif self._field is not None:
            self.form.fields[self._field.name] = self._field.value.decode("utf-8", "replace")
            self._field = None

    async def abort(self) -> None:
        if self._sink is not None:
            await self._sink.abort()
        await discard_blobs(self._storage, [blob.key for blob in self.form.blobs])


async def receive_form(
    request: Request,
    storage: Storage,
    limits: UploadLimits,
    progress: Progress,
    *,
    max_files: int,
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
    receiver = _FormReceiver(storage, limits, max_files, request_checksum)
    try:
        async for chunk in _body(request, progress):
            for event in reader.feed(chunk):
                await receiver.handle(event)
            if reader.ended:
                break  # anything after the closing boundary is ignored, not read
        reader.finish()
        if not receiver.form.blobs:
            raise MissingFilePart()
    except BaseException:
        await receiver.abort()
        raise
    return receiver.form


def _parse_metadata(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidField("`metadata` must be a JSON object.") from None
    if not isinstance(value, dict):
        raise InvalidField("`metadata` must be a JSON object.")
    return value
