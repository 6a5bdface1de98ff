"""`GET /archive?id=…`: several readable files as one zip, streamed while it is built."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from filesvc.archive.errors import InvalidArchiveRequest
from filesvc.archive.zipping import Member, ZipArchive, member_names
from filesvc.auth.dependencies import OptionalContentUser
from filesvc.deps import SessionDep, SettingsDep, StorageDep
from filesvc.errors import NotAuthenticated, error_responses
from filesvc.files.access import can_read
from filesvc.files.errors import FileNotFound
from filesvc.files.models import File
from filesvc.storage.errors import STORAGE_ERRORS
from filesvc.transfers.dependencies import TRANSFER_ERRORS, DownloadTracker

router = APIRouter(tags=["files"])
ARCHIVE_NAME = "files.zip"


@router.get(
    "/archive",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "A zip of the files (stored, zip64 when needed), with Content-Length.",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        },
        **TRANSFER_ERRORS,
        **STORAGE_ERRORS,
        # After TRANSFER_ERRORS, whose 400 this one replaces (and names).
        **error_responses(
            400,
            401,
            404,
            descriptions={
                400: "`invalid_archive_request`: no id, or more distinct ids than "
                "`FILESVC_MAX_ARCHIVE_FILES`; `invalid_transfer_id`: a bad `X-Transfer-Id`.",
                401: "`not_authenticated`: no valid token, and an id is not public "
                "(or does not exist).",
                404: "`file_not_found`: an id that does not exist or that you may not read; "
                "nothing is sent.",
            },
        ),
    },
    summary="Download several files as one zip (public files need no token)",
)
async def download_archive(
    ids: Annotated[
        list[str],
        # Checked in the route: none is a 400 (not FastAPI's 422), as the contract says.
        Query(
            alias="id",
            default_factory=list,
            description="A file id; repeat for more.",
            json_schema_extra={"minItems": 1},
        ),
    ],
    user: OptionalContentUser,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    _transfer: DownloadTracker,
) -> StreamingResponse:
    unique_ids = list(dict.fromkeys(ids))  # each file once, in the order asked
    if not 0 < len(unique_ids) <= settings.max_archive_files:
        raise InvalidArchiveRequest(
            f"Name between 1 and {settings.max_archive_files} files with `id=`."
        )
    found = {f.id: f for f in await session.scalars(select(File).where(File.id.in_(unique_ids)))}
    # Every file is checked before a byte is sent; one the caller may not read fails it all.
    files = [found.get(file_id) for file_id in unique_ids]
    if not all(file is not None and can_read(user, file) for file in files):
        raise NotAuthenticated() if user is None else FileNotFound()
    readable = [file for file in files if file is not None]
    names = member_names(file.name for file in readable)
    members = [Member(f.storage_key, name, f.size) for f, name in zip(readable, names, strict=True)]
    archive = ZipArchive(storage, members)
    # SessionDep is function-scoped: its connection is back in the pool before the bytes flow.
    return StreamingResponse(
        archive.stream(),
        media_type="application/zip",
        headers={
            "content-length": str(len(archive)),
            "content-disposition": f'attachment; filename="{ARCHIVE_NAME}"',
            "x-content-type-options": "nosniff",
            "cache-control": "private, no-store",
        },
    )
