"""S3 backend (AWS S3, SeaweedFS, MinIO, …): streamed both ways through one shared client.

Writes buffer up to one part (the caller's chunks, joined once per part). An object that
never fills a part is sent as a single PutObject on commit; a larger one becomes a
multipart upload whose parts go out while the next part is still arriving, at most
PARTS_IN_FLIGHT at a time, so memory stays at a few parts whatever the size. Both finish
with `If-None-Match: *`, which makes commit create-only on the store itself. Anything not
committed is aborted, and an abort the store cannot take right now (it is down) is
retried in the background.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import re
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, NoCredentialsError

from filesvc.storage.base import (
    ByteRange,
    GetResult,
    ObjectMeta,
    StorageError,
    validate_key,
)
from filesvc.storage.s3_client import (
    TRANSPORT_ERRORS,
    MiB,
    S3Calls,
    error_code,
    map_error,
)

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

logger = logging.getLogger(__name__)

READ_CHUNK = 1024 * 1024
PARTS_IN_FLIGHT = 3
MAX_PARTS = 10_000
MAX_PART_SIZE = 5 * 1024 * MiB
# The part size doubles every this many parts: from 8 MiB that is 8 GB in the first
# thousand parts, 16 GB more in the next, far below 10,000 parts for any allowed upload,
# while small and medium uploads keep small parts (and small buffers).
PARTS_PER_SIZE_STEP = 1000
ABORT_RETRY_DELAYS = (1.0, 2.0, 3.0, 5.0, 5.0, 10.0, 10.0, 15.0, 15.0, 30.0, 30.0) + (60.0,) * 5
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


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


class _ObjectChunks:
    """Reads an object's body in large chunks, each read in the backend's pool.

    A body that ends before its length raises, so a download is cut off rather than
    ending short but clean."""

    def __init__(self, calls: S3Calls, key: str, body: StreamingBody, length: int) -> None:
        self._s3 = calls
        self._key = key
        self._body: StreamingBody | None = body
        self._remaining = length
        self._reading: asyncio.Future[bytes] | None = None

    def __aiter__(self) -> _ObjectChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._remaining <= 0 or self._body is None:
            await self.aclose()
            raise StopAsyncIteration
        self._reading = asyncio.ensure_future(
            self._s3.run(self._body.read, min(READ_CHUNK, self._remaining))
        )
        try:
            chunk = await asyncio.shield(self._reading)
        except TRANSPORT_ERRORS as exc:
            raise map_error(exc, "download", self._key) from exc
        if not chunk:
            raise StorageError(f"S3 download of {self._key!r} ended early")
        self._remaining -= len(chunk)
        return chunk

    async def aclose(self) -> None:
        body, self._body = self._body, None
        if body is None:
            return
        if self._reading is not None:
            # Never close the connection under a read still running in its thread.
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._reading)
        with contextlib.suppress(*TRANSPORT_ERRORS):
            await self._s3.run(body.close)


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover - makes this an async generator


class S3Storage:
    name = "s3"

    def __init__(self, calls: S3Calls) -> None:
        self.calls = calls
        self.bucket = calls.options.bucket
        self._retrying: set[asyncio.Task[None]] = set()

    def _where(self) -> str:
        return self.calls.options.endpoint_url or "AWS S3"

    async def open_writer(self, key: str) -> S3BlobWriter:
        return S3BlobWriter(self, validate_key(key))

    async def head(self, key: str) -> ObjectMeta:
        validate_key(key)
        try:
            response = await self.calls.run(
                self.calls.client.head_object, Bucket=self.bucket, Key=key
            )
        except Exception as exc:
            raise map_error(exc, "head", key) from exc
        return ObjectMeta(key, response["ContentLength"], response["LastModified"])

    async def get(self, key: str, byte_range: ByteRange | None = None) -> GetResult:
        validate_key(key)
        if byte_range is not None and byte_range.length == 0:
            return self._empty_result(await self.head(key), byte_range)
        kwargs: dict[str, Any] = {}
        if byte_range is not None:
            kwargs["Range"] = f"bytes={byte_range.start}-{byte_range.end - 1}"
        try:
            response = await self.calls.run(
                self.calls.client.get_object, Bucket=self.bucket, Key=key, **kwargs
            )
        except ClientError as exc:
            if byte_range is not None and error_code(exc) == "InvalidRange":
                # Starts at or past the end (or the object is empty): clamped, not an error.
                return self._empty_result(await self.head(key), byte_range)
            raise map_error(exc, "download", key) from exc
        except Exception as exc:
            raise map_error(exc, "download", key) from exc
        length = response["ContentLength"]
        start, size = 0, length
        if match := _CONTENT_RANGE_RE.match(response.get("ContentRange", "")):
            start, size = int(match[1]), int(match[3])
        meta = ObjectMeta(key, size, response["LastModified"])
        chunks = _ObjectChunks(self.calls, key, response["Body"], length)
        return GetResult(meta=meta, range=ByteRange(start, start + length), chunks=chunks)

    @staticmethod
    def _empty_result(meta: ObjectMeta, byte_range: ByteRange) -> GetResult:
        start = min(byte_range.start, meta.size)
        return GetResult(meta=meta, range=ByteRange(start, start), chunks=_no_chunks())

    async def delete(self, key: str) -> None:
        validate_key(key)
        try:
            await self.calls.run(self.calls.client.delete_object, Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise map_error(exc, "delete", key) from exc

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectMeta]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = await self.calls.run(self.calls.client.list_objects_v2, **kwargs)
            except Exception as exc:
                raise map_error(exc, "list", prefix) from exc
            for item in page.get("Contents", []):
                yield ObjectMeta(item["Key"], item["Size"], item["LastModified"])
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def pending_uploads(self) -> builtins.list[tuple[str, str]]:
        """(key, upload id) of every multipart upload neither completed nor aborted."""
        found: builtins.list[tuple[str, str]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        while True:
            try:
                page = await self.calls.run(self.calls.client.list_multipart_uploads, **kwargs)
            except Exception as exc:
                raise map_error(exc, "listing of uploads", "") from exc
            found += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
            if not page.get("IsTruncated"):
                return found
            kwargs |= {
                "KeyMarker": page.get("NextKeyMarker", ""),
                "UploadIdMarker": page.get("NextUploadIdMarker", ""),
            }

    async def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload; if the store cannot take it now, keep trying in the
        background, so an outage does not leave its parts behind."""
        try:
            await self._abort_upload_once(key, upload_id)
        except StorageError as exc:
            logger.warning("could not abort the upload of %s (%s); retrying", key, exc)
            task = asyncio.create_task(self._keep_aborting(key, upload_id))
            self._retrying.add(task)
            task.add_done_callback(self._retrying.discard)

    async def _abort_upload_once(self, key: str, upload_id: str) -> None:
        try:
            await self.calls.run(
                self.calls.client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
            )
        except ClientError as exc:
            if error_code(exc) != "NoSuchUpload":
                raise map_error(exc, "abort", key) from exc
        except Exception as exc:
            raise map_error(exc, "abort", key) from exc

    async def _keep_aborting(self, key: str, upload_id: str) -> None:
        for delay in ABORT_RETRY_DELAYS:
            await asyncio.sleep(delay)
            try:
                await self._abort_upload_once(key, upload_id)
            except StorageError:
                continue
            logger.info("aborted the upload of %s", key)
            return
        logger.error("gave up aborting the upload of %s; its parts stay until gc", key)

    async def presigned_get_url(self, key: str, *, content_type: str, disposition: str) -> str:
        validate_key(key)
        params = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentType": content_type,
            "ResponseContentDisposition": disposition,
        }
        try:
            url: str = await self.calls.run(
                self.calls.client.generate_presigned_url,
                "get_object",
                Params=params,
                ExpiresIn=self.calls.options.presign_expiry_seconds,
            )
        except Exception as exc:
            raise map_error(exc, "presign", key) from exc
        return url

    async def check(self) -> None:
        where = self._where()
        try:
            await self.calls.run(self.calls.client.head_bucket, Bucket=self.bucket)
        except ClientError as exc:
            code = error_code(exc)
            if code in {"404", "NoSuchBucket", "NotFound"}:
                raise StorageError(f"S3 bucket {self.bucket!r} does not exist at {where}") from exc
            if code in {"403", "AccessDenied", "Forbidden"}:
                raise StorageError(
                    f"access to S3 bucket {self.bucket!r} at {where} was denied: "
                    "check the credentials and the bucket's policy"
                ) from exc
            raise StorageError(f"S3 bucket {self.bucket!r} at {where}: {code}") from exc
        except NoCredentialsError as exc:
            raise StorageError(
                "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or AWS_PROFILE / a shared credentials file"
            ) from exc
        except Exception as exc:
            raise StorageError(f"cannot reach S3 at {where}: {exc}") from exc

    async def aclose(self) -> None:
        for task in list(self._retrying):
            task.cancel()
        if self._retrying:
            logger.warning("%d multipart upload(s) left to abort at shutdown", len(self._retrying))
        await asyncio.to_thread(self.calls.shutdown)
