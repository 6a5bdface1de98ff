"""tus uploads: create one, write a chunk under its lease, finish it into a File, end it.

A chunk's path, top to bottom (`write_chunk`): claim the lease (423 if another request
holds it) → check the offset (409) → release the database connection → open the partial
store at the recorded offset → receive (tus/receive.py) → keep (durable) or discard →
commit the new offset and give the lease back in one UPDATE. When the offset reaches the
length, `_finish` makes the blob, inserts the File and deletes the upload's row in one
transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import Headers
from starlette.requests import Request

from filesvc.config import Settings
from filesvc.db import Database, utcnow
from filesvc.events.feed import CREATED, FileFeed
from filesvc.files import service as files_service
from filesvc.files.errors import InvalidField
from filesvc.files.ingest import StoredBlob, discard_blobs
from filesvc.files.limits import UploadLimits
from filesvc.files.models import File, Visibility
from filesvc.files.names import resolve_content_type
from filesvc.files.schemas import FileRead, check_metadata_size
from filesvc.storage.base import Storage
from filesvc.storage.keys import new_storage_key
from filesvc.transfers.service import Tracker, Transfer, TransferHub
from filesvc.tus import headers as tus_headers
from filesvc.tus import lease as leases
from filesvc.tus.errors import (
    InvalidTusHeader,
    LengthExceeded,
    OffsetMismatch,
    UploadLocked,
    UploadTerminated,
)
from filesvc.tus.models import TusUpload
from filesvc.tus.receive import HashCache, receive_chunk
from filesvc.tus.store import ChunkWriter, PartialStore
from filesvc.users.models import User

if TYPE_CHECKING:
    from hashlib import _Hash

FILE_KEYS = ("filename", "filetype", "visibility")
REHASH_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TusRuntime:
    """What the tus routes share: the app's pieces plus the partial store and hash cache."""

    settings: Settings
    db: Database
    storage: Storage
    partials: PartialStore
    hashes: HashCache
    transfers: TransferHub
    feed: FileFeed


@dataclass(frozen=True, slots=True)
class FileOptions:
    name: str | None
    content_type: str | None
    visibility: Visibility | None
    metadata: dict[str, Any]

    @classmethod
    def of(cls, meta: dict[str, str | None]) -> FileOptions:
        visibility = meta.get("visibility")
        try:
            parsed = Visibility(visibility) if visibility else None
            extra = check_metadata_size({k: v for k, v in meta.items() if k not in FILE_KEYS})
        except ValueError as exc:
            raise InvalidField(f"Invalid Upload-Metadata: {exc}") from None
        return cls(meta.get("filename"), meta.get("filetype"), parsed, extra)

    @property
    def resolved_type(self) -> str:
        return resolve_content_type(self.content_type, self.name or "")


@dataclass(frozen=True, slots=True)
class ChunkResult:
    offset: int
    expires_at: datetime
    file: File | None = None


def is_expired(upload: TusUpload, now: datetime | None = None) -> bool:
    return upload.expires_at <= (now or utcnow())


def _expiry(settings: Settings) -> datetime:
    return utcnow() + timedelta(seconds=settings.tus_expiration_seconds)


async def _limits(session: AsyncSession, settings: Settings, owner_id: str) -> UploadLimits:
    used = await files_service.used_bytes(session, owner_id) if settings.user_quota_bytes else 0
    return UploadLimits.for_owner(settings, used)


async def create_upload(
    session: AsyncSession, runtime: TusRuntime, user: User, headers: Headers
) -> TusUpload:
    length = tus_headers.upload_length(headers)
    meta = tus_headers.parse_metadata(headers.get("upload-metadata"))
    options = FileOptions.of(meta)
    limits = await _limits(session, runtime.settings, user.id)
    if length is not None:
        limits.check_size(length)
    limits.check_type(options.resolved_type)
    upload = TusUpload(
        id=uuid.uuid4().hex,
        owner_id=user.id,
        length=length,
        offset=0,
        meta=meta,
        expires_at=_expiry(runtime.settings),
        storage_key=new_storage_key(),
        storage_state={},
    )
    session.add(upload)
    await session.commit()
    return upload


async def start_transfer(runtime: TusRuntime, upload: TusUpload) -> Transfer:
    return await runtime.transfers.resume(
        upload.id, upload.owner_id, "upload", upload.length, upload.offset
    )


def _new_length(upload: TusUpload, headers: Headers) -> int | None:
    """The length after this request: Upload-Length may come once with a deferred one."""
    given = tus_headers.optional_length(headers)
    if given is None or given == upload.length:
        return upload.length
    if upload.length is not None:
        raise InvalidTusHeader("Upload-Length cannot change once it is set.")
    if given < upload.offset:
        raise InvalidTusHeader("Upload-Length is smaller than the bytes already received.")
    return given


async def _give_back(db: Database, upload_id: str, token: str) -> None:
    async def _release() -> None:
        async with db.session() as session:
            await leases.release(session, upload_id, token)

    await asyncio.shield(_release())


async def write_chunk(
    request: Request,
    session: AsyncSession,
    runtime: TusRuntime,
    upload: TusUpload,
    offset: int,
    transfer: Tracker,
) -> ChunkResult:
    checksum = tus_headers.chunk_checksum(request.headers)
    token = await leases.claim(session, upload.id)
    if token is None:
        raise UploadLocked()
    try:
        await session.refresh(upload)  # the row as the lease found it
        if upload.offset != offset:
            raise OffsetMismatch(upload.offset)
        length = _new_length(upload, request.headers)
        limits = await _limits(session, runtime.settings, upload.owner_id)
        if length is not None:
            limits.check_size(length)
            room = length - offset
        else:
            allowed = limits.max_bytes
            if limits.quota_left is not None:
                allowed = min(allowed, limits.quota_left)
            room = allowed - offset
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > room:
            raise LengthExceeded()
        # The body may take minutes: no pooled connection held meanwhile.
        await session.commit()
    except BaseException:
        await session.rollback()  # the claim was not committed: this gives it back
        raise
    return await _receive(
        request, session, runtime, upload, length, room, token, checksum, transfer
    )


async def _receive(
    request: Request,
    session: AsyncSession,
    runtime: TusRuntime,
    upload: TusUpload,
    length: int | None,
    room: int,
    token: str,
    checksum: tus_headers.ChunkChecksum | None,
    transfer: Tracker,
) -> ChunkResult:
    start = upload.offset
    sha256 = runtime.hashes.resume(upload.id, start)
    lease = leases.Lease(upload.id, token)
    writer = None
    try:
        writer = await runtime.partials.open_chunk(upload)
        async with leases.kept_fresh(runtime.db, lease):
            received = await receive_chunk(
                request,
                writer,
                sha256=sha256,
                checksum=checksum,
                limit=room,
                progress=transfer,
                lease=lease,
            )
            if not received.complete and checksum is not None:
                # The client is gone, and a cut chunk cannot be checked: keep nothing.
                await _discard(writer, runtime.db, upload.id, token)
                return ChunkResult(start, upload.expires_at)
            offset = start + received.size
            final = length is not None and offset == length
            state = await writer.keep(final=final)
    except BaseException:
        await _discard(writer, runtime.db, upload.id, token)
        raise
    upload.storage_state = state
    if final:
        file = await _finish(session, runtime, upload, sha256, token)
        await writer.settled()  # the tail this chunk started from, if any
        return ChunkResult(offset, upload.expires_at, file)
    expires_at = _expiry(runtime.settings)
    kept = await leases.release(
        session,
        upload.id,
        token,
        offset=offset,
        length=length,
        storage_state=state,
        expires_at=expires_at,
    )
    await session.commit()
    if not kept:
        raise UploadLocked("The upload's lease was lost while writing; ask with HEAD and retry.")
    await writer.settled()
    if sha256 is not None:
        runtime.hashes.store(upload.id, offset, sha256)
    return ChunkResult(offset, expires_at)


async def _discard(writer: ChunkWriter | None, db: Database, upload_id: str, token: str) -> None:
    try:
        if writer is not None:
            await writer.discard()
    finally:
        await _give_back(db, upload_id, token)


async def rehash(storage: Storage, key: str) -> str:
    """SHA-256 of a stored blob, read back in 1 MiB chunks hashed in a thread."""
    sha256 = hashlib.sha256()
    result = await storage.get(key)
    try:
        async for chunk in result.chunks:
            await asyncio.to_thread(sha256.update, chunk)
    finally:
        await result.aclose()
    return sha256.hexdigest()


async def _finish(
    session: AsyncSession,
    runtime: TusRuntime,
    upload: TusUpload,
    sha256: _Hash | None,
    token: str,
) -> File:
    key = None
    upload_id = upload.id  # the rollback below expires the instance
    try:
        key = await runtime.partials.finish(upload)
        digest = sha256.hexdigest() if sha256 is not None else await rehash(runtime.storage, key)
        owner = await session.get(User, upload.owner_id)
        options = FileOptions.of(upload.meta)
        if owner is None:
            raise UploadTerminated("The upload's owner no longer exists.")
        size = upload.length if upload.length is not None else upload.offset
        blob = StoredBlob(key, size, digest, options.name, options.content_type)
        file = files_service.new_file(
            owner,
            blob,
            name=options.name,
            visibility=options.visibility,
            metadata=options.metadata,
        )
        # Its own transaction, not the group commit: the upload's row goes in the same one.
        session.add(file)
        events = await runtime.feed.record(session, CREATED, [file])
        result = await session.execute(
            delete(TusUpload)
            .where(leases.held_by(upload.id, token))
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            raise UploadLocked("The upload's lease was lost while writing; ask with HEAD.")
        await session.commit()
    except BaseException:
        await session.rollback()
        if key is not None:
            await discard_blobs(runtime.storage, [key])
        await _give_back(runtime.db, upload_id, token)
        raise
    await runtime.feed.publish(events)
    await runtime.partials.finished(upload)
    runtime.hashes.forget(upload.id)
    return file


async def finish_empty(
    session: AsyncSession, runtime: TusRuntime, upload: TusUpload, transfer: Tracker
) -> File:
    """An upload created with Upload-Length: 0 is complete at once."""
    token = await leases.claim(session, upload.id)
    if token is None:
        raise UploadLocked()
    writer = await runtime.partials.open_chunk(upload)
    upload.storage_state = await writer.keep(final=True)
    file = await _finish(session, runtime, upload, hashlib.sha256(), token)
    await transfer.complete(file=FileRead.of(file).model_dump(mode="json"))
    return file


async def terminate_upload(session: AsyncSession, runtime: TusRuntime, upload: TusUpload) -> None:
    token = await leases.claim(session, upload.id)
    if token is None:
        raise UploadLocked()
    await session.commit()
    try:
        await runtime.partials.remove(upload)
    except BaseException:
        await _give_back(runtime.db, upload.id, token)
        raise
    await session.execute(
        delete(TusUpload)
        .where(leases.held_by(upload.id, token))
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    runtime.hashes.forget(upload.id)
    transfer = await start_transfer(runtime, upload)
    await transfer.fail_with(UploadTerminated())
