"""Uploads to S3: socket bytes arrive in chunks, leave as a PutObject or as multipart parts.

Writes buffer up to one part (the caller's chunks, joined once per part). An object that
never fills a part is sent as a single PutObject on commit; a larger one becomes a
multipart upload whose parts go out while the next part is still arriving, at most
PARTS_IN_FLIGHT at a time, so memory stays at a few parts whatever the size. Both finish
with `If-None-Match: *`, which makes commit create-only on the store itself. Anything not
committed is aborted (see S3Storage.abort_upload).
"""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from filesvc.storage.base import ObjectMeta, StorageError
from filesvc.storage.s3_client import MiB, map_error

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from filesvc.storage.s3 import S3Storage

PARTS_IN_FLIGHT = 3
MAX_PARTS = 10_000
MAX_PART_SIZE = 5 * 1024 * MiB
# The part size doubles every this many parts: from 8 MiB that is 8 GB in the first
# thousand parts, 16 GB more in the next, far below 10,000 parts for any allowed upload,
# while small and medium uploads keep small parts (and small buffers).
PARTS_PER_SIZE_STEP = 1000


def part_size_for(base: int, part_number: int) -> int:
    return min(base << ((part_number - 1) // PARTS_PER_SIZE_STEP), MAX_PART_SIZE)


class S3BlobWriter:
    def __init__(self, storage: S3Storage, key: str) -> None:
        self.key = key
        self._storage = storage
        self._s3 = storage.calls
        self._bucket = storage.bucket
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._closed = False
        # Each of these runs to its end even if its awaiter is cancelled (a boto3 call in a
        # thread cannot be stopped), so abort() waits for them and undoes what they did.
        self._upload: asyncio.Future[str] | None = None
        self._parts: deque[asyncio.Future[CompletedPartTypeDef]] = deque()
        self._done_parts: list[CompletedPartTypeDef] = []
        self._next_part = 1
        self._sent = 0
        self._committing: asyncio.Future[ObjectMeta] | None = None
        self._committed = False

    def _part_size(self) -> int:
        return part_size_for(self._s3.options.part_size, self._next_part)

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise StorageError("writer is closed")
        # Kept by reference and joined once per part: an object below one part (most of
        # them) is never copied here at all, which matters with many uploads at once.
        self._chunks.append(data)
        self._buffered += len(data)
        size = self._part_size()
        if self._buffered < size:
            return
        body = self._take_buffer()
        if len(body) < 2 * size:
            # Parts need not be equal, only at least the minimum: sent whole, not copied.
            await self._send_part(body)
            return
        # One write of several parts' worth: cut it, so no part (and no buffer) is huge.
        start = 0
        while len(body) - start >= size:
            await self._send_part(body[start : start + size])
            start += size
            size = self._part_size()
        if start < len(body):
            self._chunks.append(body[start:])
            self._buffered = len(body) - start

    def _take_buffer(self) -> bytes:
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return body

    async def _send_part(self, body: bytes) -> None:
        if self._next_part > MAX_PARTS:
            raise StorageError(f"object {self.key!r} needs more than {MAX_PARTS} parts")
        while self._parts and (len(self._parts) >= PARTS_IN_FLIGHT or self._parts[0].done()):
            # Also collects finished parts early, so a failed one stops the upload now.
            await self._collect_oldest_part()
        if self._upload is None:
            self._upload = asyncio.ensure_future(self._create_upload())
        upload_id = await asyncio.shield(self._upload)
        number, self._next_part = self._next_part, self._next_part + 1
        self._sent += len(body)
        self._parts.append(asyncio.ensure_future(self._upload_part(upload_id, number, body)))

    async def _collect_oldest_part(self) -> None:
        # Popped only once done: abort() must still see a part whose wait was cancelled.
        done = await asyncio.shield(self._parts[0])
        self._parts.popleft()
        self._done_parts.append(done)

    async def _create_upload(self) -> str:
        try:
            response = await self._s3.run(
                self._s3.client.create_multipart_upload, Bucket=self._bucket, Key=self.key
            )
        except Exception as exc:
            raise map_error(exc, "upload", self.key) from exc
        return response["UploadId"]

    async def _upload_part(self, upload_id: str, number: int, body: bytes) -> CompletedPartTypeDef:
        try:
            response = await self._s3.run(
                self._s3.client.upload_part,
                Bucket=self._bucket,
                Key=self.key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
            )
        except Exception as exc:
            raise map_error(exc, f"upload of part {number}", self.key) from exc
        return {"PartNumber": number, "ETag": response["ETag"]}

    async def commit(self) -> ObjectMeta:
        if self._closed:
            raise StorageError("writer is closed")
        self._closed = True
        self._committing = asyncio.ensure_future(self._commit())
        try:
            meta = await asyncio.shield(self._committing)
        except BaseException:
            await self.abort()
            raise
        self._committed = True
        return meta

    async def _commit(self) -> ObjectMeta:
        body = self._take_buffer()
        if self._upload is None:
            try:
                await self._s3.run(
                    self._s3.client.put_object,
                    Bucket=self._bucket,
                    Key=self.key,
                    Body=body,
                    IfNoneMatch="*",
                )
            except Exception as exc:
                raise map_error(exc, "upload", self.key) from exc
            return ObjectMeta(self.key, len(body), datetime.now(UTC))
        if body:
            await self._send_part(body)
        while self._parts:
            await self._collect_oldest_part()
        upload_id = await self._upload
        try:
            await self._s3.run(
                self._s3.client.complete_multipart_upload,
                Bucket=self._bucket,
                Key=self.key,
                UploadId=upload_id,
                MultipartUpload={"Parts": sorted(self._done_parts, key=lambda p: p["PartNumber"])},
                IfNoneMatch="*",
            )
        except Exception as exc:
            raise map_error(exc, "upload", self.key) from exc
        return ObjectMeta(self.key, self._sent, datetime.now(UTC))

    async def abort(self) -> None:
        # Shielded: a cancelled request must still leave no object and no pending parts.
        await asyncio.shield(self._abort())

    async def _abort(self) -> None:
        if self._committed:
            return
        self._closed = True
        self._chunks.clear()
        committing, self._committing = self._committing, None
        if committing is not None:
            try:
                await committing
            except BaseException:  # noqa: S110 - its failure is the one being reported
                pass
            else:
                # Committed, but the caller was cancelled and saw a failure: undo it.
                await self._storage.delete(self.key)
                return
        upload, self._upload = self._upload, None
        parts, self._parts = list(self._parts), deque()
        await asyncio.gather(*parts, return_exceptions=True)
        if upload is None:
            return
        try:
            upload_id = await upload
        except BaseException:
            return  # no upload was created
        await self._storage.abort_upload(self.key, upload_id)
