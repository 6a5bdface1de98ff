"""One chunk of a tus upload: socket bytes → progress counter → size check → hashes
(the chunk's Upload-Checksum, the whole file's SHA-256) and the partial store's writer.

As in files/ingest.py, bytes go in 1 MiB batches, never joined: the partial store's
writer hashes and writes each in threads while the next batch arrives. A body cut off by
the client is not an error here: what arrived is reported, and the service keeps it (or,
with a checksum it cannot verify, drops it).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect, Request

from filesvc.files.ingest import BATCH_BYTES, Progress
from filesvc.tus.errors import ChunkChecksumMismatch, LengthExceeded, UploadLocked
from filesvc.tus.headers import ChunkChecksum
from filesvc.tus.lease import Lease
from filesvc.tus.store import ChunkWriter

if TYPE_CHECKING:
    from hashlib import _Hash

MAX_CACHED_HASHES = 256


class HashCache:
    """The running SHA-256 of uploads this process is receiving, by upload id and offset.

    hashlib state cannot be saved, so this is only a shortcut: while consecutive chunks
    reach the same process the hash is carried on; after a restart, or when chunks go to
    other workers, it is recomputed from the stored bytes when the upload completes.
    """

    def __init__(self) -> None:
        self._hashes: OrderedDict[str, tuple[int, _Hash]] = OrderedDict()

    def resume(self, upload_id: str, offset: int) -> _Hash | None:
        """A copy of the hash at `offset`, or None when this process does not have it."""
        if offset == 0:
            return hashlib.sha256()
        cached = self._hashes.get(upload_id)
        if cached is None or cached[0] != offset:
            return None
        return cached[1].copy()

    def store(self, upload_id: str, offset: int, sha256: _Hash) -> None:
        self._hashes[upload_id] = (offset, sha256)
        self._hashes.move_to_end(upload_id)
        while len(self._hashes) > MAX_CACHED_HASHES:
            self._hashes.popitem(last=False)

    def forget(self, upload_id: str) -> None:
        self._hashes.pop(upload_id, None)


@dataclass(slots=True)
class Received:
    size: int
    complete: bool  # False: the client went away before the end of its body


class _Batches:
    def __init__(
        self, writer: ChunkWriter, hashes: list[_Hash], lease: Lease, limit: int | None
    ) -> None:
        self.size = 0
        self._writer = writer
        self._hashes = hashes
        self._lease = lease
        self._limit = limit
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._in_flight: asyncio.Future[None] | None = None

    async def add(self, data: bytes) -> None:
        self.size += len(data)
        if self._limit is not None and self.size > self._limit:
            raise LengthExceeded()
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= BATCH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        await self.wait()
        if self._lease.lost:
            raise UploadLocked("The upload's lease was lost; ask with HEAD and retry.")
        if self._buffered:
            # The chunks as they came, never joined: the writer takes them as they are.
            batch, self._buffer = self._buffer, []
            self._buffered = 0
            self._in_flight = asyncio.ensure_future(self._writer.write(batch, self._hashes))

    async def wait(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            # Shielded: a cancelled request must not abandon a thread still writing.
            await asyncio.shield(in_flight)


async def receive_chunk(
    request: Request,
    writer: ChunkWriter,
    *,
    sha256: _Hash | None,
    checksum: ChunkChecksum | None,
    limit: int | None,
    progress: Progress,
    lease: Lease,
) -> Received:
    """Write the request body through `writer`; `limit` bytes at most (else 413).

    The caller keeps or discards what was written; a wrong checksum is raised here, after
    every byte is in."""
    chunk_hash = checksum.new_hash() if checksum is not None else None
    hashes = [h for h in (sha256, chunk_hash) if h is not None]
    batches = _Batches(writer, hashes, lease, limit)
    complete = True
    try:
        async for data in request.stream():
            if data:
                await progress.advance(len(data))
                await batches.add(data)
    except ClientDisconnect:
        complete = False
    await batches.flush()
    await batches.wait()
    if (
        complete
        and checksum is not None
        and chunk_hash is not None
        and (chunk_hash.digest() != checksum.digest)
    ):
        raise ChunkChecksumMismatch()
    return Received(batches.size, complete)
