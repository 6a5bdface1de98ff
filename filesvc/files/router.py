from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status
from starlette.convertors import Convertor, register_url_convertor

from filesvc.auth.dependencies import CurrentUser, EditorUser
from filesvc.config import Settings
from filesvc.deps import (
    AppContext,
    ContextDep,
    FeedDep,
    FileInsertsDep,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from filesvc.errors import error_responses
from filesvc.events.feed import DELETED, UPDATED, FileFeed, NewEvent
from filesvc.files import service
from filesvc.files.dependencies import ChangeableFile, DownloadableFile, ReadableFile
from filesvc.files.downloads import DOWNLOAD_RESPONSES, REDIRECT_RESPONSE, file_response
from filesvc.files.errors import (
    ANONYMOUS_NOT_PUBLIC,
    NOT_CHANGEABLE,
    NOT_READABLE,
    InvalidField,
)
from filesvc.files.ingest import (
    ReceivedForm,
    StoredBlob,
    discard_blobs,
    receive_form,
    receive_raw,
)
from filesvc.files.inserts import FileInserts
from filesvc.files.limits import UploadLimits
from filesvc.files.models import File, Visibility
from filesvc.files.openapi import multipart_upload, raw_upload
from filesvc.files.schemas import (
    FileBatch,
    FileListParams,
    FilePage,
    FileRead,
    FileUpdate,
    file_url,
)
from filesvc.storage.base import Storage
from filesvc.storage.errors import STORAGE_ERRORS
from filesvc.transfers.dependencies import TRANSFER_ERRORS, DownloadTracker, UploadTracker
from filesvc.transfers.service import Tracker
from filesvc.users.models import User

logger = logging.getLogger(__name__)


class RawNameConvertor(Convertor[str]):
    """Like Starlette's `path`, but also matching newlines (its `.*` stops at one), so
    any decoded name reaches `clean_name` instead of a puzzling 404."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("rawname", RawNameConvertor())

router = APIRouter(prefix="/files", tags=["files"], responses=error_responses(401))
# The statuses of a route anyone may call for a public file.
READ_ERRORS = error_responses(401, 404, descriptions={401: ANONYMOUS_NOT_PUBLIC, 404: NOT_READABLE})
UPLOAD_ERRORS = {
    **error_responses(400, 403, 413, 415),
    **TRANSFER_ERRORS,
    **STORAGE_ERRORS,
}
VisibilityQuery = Annotated[
    Visibility | None,
    Query(description="Who may read the file (default `private`); a form field wins."),
]


async def _new_upload_limits(context: AppContext, owner_id: str) -> UploadLimits:
    """A new upload's limits for this owner. The quota's sum is read in a short session of
    its own, closed before the body arrives (it may take minutes); without a quota, no
    session at all."""
    used = 0
    if context.settings.user_quota_bytes:
        async with context.db.session() as session:
            used = await service.used_bytes(session, owner_id)
    return UploadLimits.for_owner(context.settings, used)


async def _replacement_limits_then_release(
    session: SessionDep, settings: Settings, owner_id: str, replacing: int
) -> UploadLimits:
    """A replacement's limits for the file's owner; then end the transaction that loaded
    the file, so a body that may take minutes holds no pooled connection."""
    used = await service.used_bytes(session, owner_id) if settings.user_quota_bytes else 0
    await session.commit()
    return UploadLimits.for_owner(settings, used - replacing)


@asynccontextmanager
async def _discard_on_failure(storage: Storage, blobs: list[StoredBlob]) -> AsyncIterator[None]:
    """Blobs whose rows do not commit are removed, whatever the failure."""
    try:
        yield
    except BaseException:
        await discard_blobs(storage, [blob.key for blob in blobs])
        raise


async def _save_form(
    inserts: FileInserts,
    storage: Storage,
    feed: FileFeed,
    user: User,
    form: ReceivedForm,
    limits: UploadLimits,
    visibility: Visibility | None,
) -> list[File]:
    async with _discard_on_failure(storage, form.blobs):
        options = form.options()
        if options.name is not None and len(form.blobs) > 1:
            raise InvalidField("`name` can only be given when uploading one file.")

        def build() -> list[File]:
            return [
                service.new_file(
                    user,
                    blob,
                    name=options.name,
                    visibility=options.visibility or visibility,
                    metadata=options.metadata,
                )
                for blob in form.blobs
            ]

        for file in build():  # the final type, now that the names are known
            limits.check_type(file.content_type)
        files, events = await inserts.run(build)  # perhaps with other uploads' rows
    await feed.publish(events)
    return files


async def _completed(transfer: Tracker, file: FileRead) -> FileRead:
    await transfer.complete(file=file.model_dump(mode="json"))
    return file


async def _delete_old_blob(storage: Storage, key: str) -> None:
    try:
        await storage.delete(key)
    except Exception:
        # The row is already gone or repointed; `filesvc gc` removes what is left.
        logger.warning("could not delete blob %s; gc will collect it", key, exc_info=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=multipart_upload(many=False),
    responses=UPLOAD_ERRORS,
    summary="Upload a file (multipart/form-data, part `file`)",
)
async def upload_file(
    request: Request,
    response: Response,
    user: EditorUser,
    transfer: UploadTracker,
    context: ContextDep,
    storage: StorageDep,
    settings: SettingsDep,
    feed: FeedDep,
    inserts: FileInsertsDep,
    visibility: VisibilityQuery = None,
) -> FileRead:
    limits = await _new_upload_limits(context, user.id)
    form = await receive_form(request, storage, limits, transfer, max_files=1)
    [file] = await _save_form(inserts, storage, feed, user, form, limits, visibility)
    response.headers["Location"] = settings.absolute_url(file_url(file.id))
    return await _completed(transfer, FileRead.of(file))


@router.post(
    "/batch",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=multipart_upload(many=True),
    responses=UPLOAD_ERRORS,
    summary="Upload several files at once; all or nothing",
)
async def upload_files(
    request: Request,
    user: EditorUser,
    transfer: UploadTracker,
    context: ContextDep,
    storage: StorageDep,
    settings: SettingsDep,
    feed: FeedDep,
    inserts: FileInsertsDep,
    visibility: VisibilityQuery = None,
) -> FileBatch:
    limits = await _new_upload_limits(context, user.id)
    max_files = settings.max_batch_files
    form = await receive_form(request, storage, limits, transfer, max_files=max_files)
    files = await _save_form(inserts, storage, feed, user, form, limits, visibility)
    batch = FileBatch(items=[FileRead.of(file) for file in files])
    await transfer.complete(files=batch.model_dump(mode="json")["items"])
    return batch


async def store_raw_upload(
    request: Request,
    context: AppContext,
    user: User,
    transfer: Tracker,
    name: str,
    visibility: Visibility | None,
) -> tuple[File, NewEvent]:
    """A raw upload's body stored and its row committed: the work of `PUT /raw/{name}`,
    for its route and for the hot uploads (files/hot_uploads.py). Returns the file and its
    `file.created` event, whose data is the file's FileRead."""
    storage = context.storage
    limits = await _new_upload_limits(context, user.id)
    blob = await receive_raw(request, storage, limits, name, transfer)
    async with _discard_on_failure(storage, [blob]):
        [file], [event] = await context.file_inserts.run(
            lambda: [service.new_file(user, blob, name=name, visibility=visibility)]
        )
    await context.feed.publish([event])
    return file, event


@router.put(
    "/raw/{name:rawname}",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=raw_upload(),
    responses=UPLOAD_ERRORS,
    summary="Upload a raw body (`curl -T`), Content-Length or chunked",
)
async def upload_raw_file(
    name: str,
    request: Request,
    response: Response,
    user: EditorUser,
    transfer: UploadTracker,
    context: ContextDep,
    visibility: VisibilityQuery = None,
) -> FileRead:
    file, _ = await store_raw_upload(request, context, user, transfer, name, visibility)
    response.headers["Location"] = context.settings.absolute_url(file_url(file.id))
    return await _completed(transfer, FileRead.of(file))


@router.put(
    "/{file_id}/content",
    openapi_extra=raw_upload(),
    responses={
        **UPLOAD_ERRORS,
        **error_responses(403, 404, descriptions={403: NOT_CHANGEABLE, 404: NOT_READABLE}),
    },
    summary="Replace a file's bytes (owner or admin)",
)
async def replace_file_content(
    request: Request,
    file: ChangeableFile,
    transfer: UploadTracker,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    feed: FeedDep,
) -> FileRead:
    limits = await _replacement_limits_then_release(session, settings, file.owner_id, file.size)
    blob = await receive_raw(request, storage, limits, file.name, transfer)
    async with _discard_on_failure(storage, [blob]):
        old_key = service.replace_content(file, blob)
        events = await feed.record(session, UPDATED, [file])
        await session.commit()
    await feed.publish(events)
    await _delete_old_blob(storage, old_key)
    return await _completed(transfer, FileRead.of(file))


@router.get("", responses=error_responses(400), summary="List the files the caller may read")
async def list_files(
    params: Annotated[FileListParams, Query()], user: CurrentUser, session: SessionDep
) -> FilePage:
    files, next_cursor = await service.list_files(session, user, params)
    return FilePage(items=[FileRead.of(file) for file in files], next_cursor=next_cursor)


@router.get(
    "/{file_id}",
    responses=READ_ERRORS,
    summary="A file's metadata (public files need no token)",
)
async def read_file(file: ReadableFile) -> FileRead:
    return FileRead.of(file)


@router.patch(
    "/{file_id}",
    responses=error_responses(400, 403, 404, descriptions={403: NOT_CHANGEABLE, 404: NOT_READABLE}),
    summary="Rename, change visibility or metadata (owner or admin)",
)
async def update_file(
    file: ChangeableFile, change: FileUpdate, session: SessionDep, feed: FeedDep
) -> FileRead:
    await service.update_file(session, file, change)
    events = await feed.record(session, UPDATED, [file])
    await session.commit()
    await feed.publish(events)
    return FileRead.of(file)


@router.delete(
    "/{file_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(403, 404, descriptions={403: NOT_CHANGEABLE, 404: NOT_READABLE}),
    summary="Delete a file and its bytes (owner or admin)",
)
async def delete_file(
    file: ChangeableFile, session: SessionDep, storage: StorageDep, feed: FeedDep
) -> Response:
    events = await feed.record(session, DELETED, [file])
    await session.delete(file)
    await session.commit()
    await feed.publish(events)
    await _delete_old_blob(storage, file.storage_key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{file_id}/content",
    responses={**DOWNLOAD_RESPONSES, **REDIRECT_RESPONSE, **READ_ERRORS},
    response_class=Response,
    summary="Download a file's bytes (ranges, conditional; public files need no token)",
)
@router.head(
    "/{file_id}/content",
    responses={**DOWNLOAD_RESPONSES, **REDIRECT_RESPONSE, **READ_ERRORS},
    response_class=Response,
    summary="A download's headers",
)
async def download_file(
    request: Request,
    file: DownloadableFile,
    _transfer: DownloadTracker,
    context: ContextDep,
    disposition: Literal["attachment", "inline"] = "attachment",
    redirect: Annotated[
        bool, Query(description="S3 backend: 307 to a short-lived presigned URL of the store")
    ] = False,
) -> Response:
    # No database connection is held while the bytes flow: the row came by a point read.
    return await file_response(
        context.storage, context.small_blobs, file, request, disposition, redirect=redirect
    )
