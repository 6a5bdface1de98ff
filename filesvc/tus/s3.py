"""tus on S3: the chunks become the parts of one multipart upload under the blob's key.

S3 wants parts of at least 5 MiB (all but the last), while tus chunks may be any size.
Bytes that do not fill a part by the end of a chunk are kept as a small *tail object*
(`<key>.tail-<n>`, below one part); the next chunk starts by reading it back. So every
byte counted in the committed offset is in S3: in a part whose ETag is in the row, or in
the tail the row names. A new tail gets a new key and the old one is deleted only after
the row points at the new one, so a crash at any point leaves the row's state intact.

The storage state in the row: {"upload_id": str | None, "parts": [[number, etag, size]],
"tail": key | None, "tail_size": int}.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from filesvc.storage.base import Hasher, StorageError, hash_chunks
from filesvc.storage.s3 import S3Storage
from filesvc.storage.s3_client import MiB, map_error
from filesvc.tus.models import TusUpload
from filesvc.tus.store import StorageState

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000
PARTS_IN_FLIGHT = 2


class S3Chunk:
    def __init__(self, partials: S3Partials, upload: TusUpload, tail: bytes) -> None:
        self._s3 = partials.storage.calls
        self._storage = partials.storage
        self._bucket = partials.storage.bucket
        self._key = upload.storage_key
        self._part_size = max(partials.storage.calls.options.part_size, MIN_PART_SIZE)
        state = upload.storage_state
        self._upload_id: str | None = state.get("upload_id")
        self._parts: list[list[Any]] = [list(p) for p in state.get("parts", [])]
        self._old_tail: str | None = state.get("tail")
        self._new_tail: str | None = None
        self._buffer = [tail] if tail else []
        self._buffered = len(tail)
        self._in_flight: list[asyncio.Future[list[Any]]] = []

    async def write(self, chunks: Sequence[bytes], hashes: Sequence[Hasher]) -> None:
        hashing = asyncio.ensure_future(asyncio.to_thread(hash_chunks, hashes, chunks))
        try:
            await self._append(chunks)
        finally:
            await asyncio.shield(hashing)  # the hashes are the caller's again only then

    async def _append(self, chunks: Sequence[bytes]) -> None:
        self._buffer += chunks
        self._buffered += sum(map(len, chunks))
        if self._buffered >= self._part_size:
            await self._send_part(self._take())

    def _take(self) -> bytes:
        body = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        return body

    async def _send_part(self, body: bytes) -> None:
        while len(self._in_flight) >= PARTS_IN_FLIGHT:
            self._parts.append(await asyncio.shield(self._in_flight.pop(0)))
        if self._upload_id is None:
            self._upload_id = await self._create_upload()
        number = len(self._parts) + len(self._in_flight) + 1
        if number > MAX_PARTS:
            raise StorageError(f"tus upload {self._key!r} needs more than {MAX_PARTS} parts")
        self._in_flight.append(asyncio.ensure_future(self._upload_part(number, body)))

    async def _create_upload(self) -> str:
        try:
            response = await self._s3.run(
                self._s3.client.create_multipart_upload, Bucket=self._bucket, Key=self._key
            )
        except Exception as exc:
            raise map_error(exc, "upload", self._key) from exc
        return response["UploadId"]

    async def _upload_part(self, number: int, body: bytes) -> list[Any]:
        try:
            response = await self._s3.run(
                self._s3.client.upload_part,
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id or "",
                PartNumber=number,
                Body=body,
            )
        except Exception as exc:
            raise map_error(exc, f"upload of part {number}", self._key) from exc
        return [number, response["ETag"], len(body)]

    async def _drain(self) -> None:
        while self._in_flight:
            self._parts.append(await asyncio.shield(self._in_flight.pop(0)))

    async def keep(self, *, final: bool) -> StorageState:
        rest = self._take()
        if rest and (final or len(rest) >= MIN_PART_SIZE):
            await self._send_part(rest)
            rest = b""
        await self._drain()
        if rest:
            self._new_tail = f"{self._key}.tail-{uuid.uuid4().hex[:12]}"
            try:
                await self._s3.run(
                    self._s3.client.put_object, Bucket=self._bucket, Key=self._new_tail, Body=rest
                )
            except Exception as exc:
                raise map_error(exc, "upload", self._new_tail) from exc
        return {
            "upload_id": self._upload_id,
            "parts": self._parts,
            "tail": self._new_tail,
            "tail_size": len(rest),
        }

    async def discard(self) -> None:
        await asyncio.shield(self._discard())

    async def _discard(self) -> None:
        # Parts sent for this chunk are not in the row: the next chunk reuses their numbers,
        # which replaces them in S3.
        self._buffer.clear()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight.clear()
        if self._new_tail is not None:
            with contextlib.suppress(StorageError):
                await self._storage.delete(self._new_tail)

    async def settled(self) -> None:
        if self._old_tail is not None and self._old_tail != self._new_tail:
            with contextlib.suppress(StorageError):
                await self._storage.delete(self._old_tail)


class S3Partials:
    def __init__(self, storage: S3Storage) -> None:
        self.storage = storage

    async def open_chunk(self, upload: TusUpload) -> S3Chunk:
        tail = b""
        key = upload.storage_state.get("tail")
        if key:
            result = await self.storage.get(key)
            tail = b"".join([chunk async for chunk in result.chunks])
            if len(tail) != upload.storage_state.get("tail_size"):
                raise StorageError(f"the tail of tus upload {upload.id!r} has the wrong size")
        return S3Chunk(self, upload, tail)

    async def finish(self, upload: TusUpload) -> str:
        state = upload.storage_state
        calls, bucket, key = self.storage.calls, self.storage.bucket, upload.storage_key
        try:
            if state.get("upload_id") is None:  # an empty upload: no part was ever sent
                await calls.run(
                    calls.client.put_object, Bucket=bucket, Key=key, Body=b"", IfNoneMatch="*"
                )
                return key
            parts: list[CompletedPartTypeDef] = [
                {"PartNumber": number, "ETag": etag} for number, etag, _ in state["parts"]
            ]
            await calls.run(
                calls.client.complete_multipart_upload,
                Bucket=bucket,
                Key=key,
                UploadId=state["upload_id"],
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except Exception as exc:
            raise map_error(exc, "upload", key) from exc
        return key

    async def finished(self, upload: TusUpload) -> None:
        tail = upload.storage_state.get("tail")
        if tail:
            with contextlib.suppress(StorageError):
                await self.storage.delete(tail)

    async def remove(self, upload: TusUpload) -> None:
        state = upload.storage_state
        if state.get("upload_id"):
            await self.storage.abort_upload(upload.storage_key, state["upload_id"])
        if state.get("tail"):
            await self.storage.delete(state["tail"])
