"""S3 backend (AWS S3, SeaweedFS, MinIO, …): streamed both ways through one shared client.

Uploads are s3_upload.S3BlobWriter: one PutObject below one part, else a multipart upload
with a few parts in flight, create-only on commit, aborted on any failure; an abort the
store cannot take right now (it is down) is retried here in the background. Downloads
read the object's body in large chunks in the backend's own thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, NoCredentialsError

from filesvc.storage.base import (
    ByteRange,
    GetResult,
    ObjectMeta,
    PendingWrite,
    StorageError,
    validate_key,
)
from filesvc.storage.s3_client import (
    TRANSPORT_ERRORS,
    S3Calls,
    error_code,
    map_error,
)
from filesvc.storage.s3_upload import S3BlobWriter

if TYPE_CHECKING:
    from botocore.response import StreamingBody

logger = logging.getLogger(__name__)

READ_CHUNK = 1024 * 1024
ABORT_RETRY_DELAYS = (1.0, 2.0, 3.0, 5.0, 5.0, 10.0, 10.0, 15.0, 15.0, 30.0, 30.0) + (60.0,) * 5
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


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
        if body is not None:
            # Shielded: a cancelled request is cancelled again at every await of its
            # scope, and the connection must be closed all the same.
            await asyncio.shield(self._close_after_read(body))

    async def _close_after_read(self, body: StreamingBody) -> None:
        if self._reading is not None:
            # Never close the connection under a read still running in its thread.
            with contextlib.suppress(BaseException):
                await self._reading
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

    async def pending_writes(self) -> AsyncIterator[PendingWrite]:
        """Every multipart upload neither completed nor aborted; its last activity is its
        newest part's (or its start, before any part has arrived)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        while True:
            try:
                page = await self.calls.run(self.calls.client.list_multipart_uploads, **kwargs)
            except Exception as exc:
                raise map_error(exc, "listing of uploads", "") from exc
            for upload in page.get("Uploads", []):
                yield await self._pending_write(
                    upload["Key"], upload["UploadId"], upload["Initiated"]
                )
            if not page.get("IsTruncated"):
                return
            kwargs |= {
                "KeyMarker": page.get("NextKeyMarker", ""),
                "UploadIdMarker": page.get("NextUploadIdMarker", ""),
            }

    async def _pending_write(self, key: str, upload_id: str, initiated: datetime) -> PendingWrite:
        size, last = 0, initiated
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id}
        while True:
            try:
                page = await self.calls.run(self.calls.client.list_parts, **kwargs)
            except ClientError as exc:
                if error_code(exc) == "NoSuchUpload":
                    break  # completed or aborted meanwhile
                raise map_error(exc, "listing of parts", key) from exc
            except Exception as exc:
                raise map_error(exc, "listing of parts", key) from exc
            for part in page.get("Parts", []):
                size += part["Size"]
                last = max(last, part["LastModified"])
            if not page.get("IsTruncated"):
                break
            kwargs["PartNumberMarker"] = page["NextPartNumberMarker"]
        return PendingWrite(id=upload_id, key=key, size=size, last_activity=last)

    async def discard_pending(self, pending: PendingWrite) -> bool:
        # S3 cannot tell whether a writer is still sending parts: the caller's grace does.
        if pending.key is None:
            raise StorageError(f"multipart upload {pending.id!r} has no key")
        await self._abort_upload_once(pending.key, pending.id)
        return True

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
