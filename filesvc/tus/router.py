"""tus 1.0 at /api/v1/uploads: discovery, creation (with upload, deferred length), HEAD for
the offset, PATCH for a chunk, DELETE to terminate. The work is in tus/service.py."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from filesvc.deps import SessionDep
from filesvc.errors import ErrorBody, error_responses
from filesvc.files.schemas import FileRead, file_url
from filesvc.transfers.dependencies import TRANSFER_STATE
from filesvc.transfers.service import Tracker
from filesvc.tus import headers as tus_headers
from filesvc.tus import service
from filesvc.tus.dependencies import Runtime, TusEditor, TusVersion, VisibleUpload
from filesvc.tus.errors import TUS_VERSION, OffsetContentTypeRequired
from filesvc.tus.models import TusUpload
from filesvc.tus.service import ChunkResult, TusRuntime

router = APIRouter(prefix="/uploads", tags=["uploads (tus)"], responses=error_responses(401))

UPLOADS_PATH = "/api/v1/uploads"
# Not an IANA status, so not in HTTPStatus: the tus checksum extension's own.
CHECKSUM_MISMATCH: dict[int | str, dict[str, Any]] = {
    460: {"model": ErrorBody, "description": "Checksum Mismatch"}
}


def upload_url(upload_id: str) -> str:
    return f"{UPLOADS_PATH}/{upload_id}"


def _tus(headers: dict[str, str] | None = None) -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION, **(headers or {})}


def _discovery(runtime: TusRuntime) -> Response:
    return Response(
        status_code=status.HTTP_204_NO_CONTENT,
        headers=_tus(
            {
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": ",".join(tus_headers.EXTENSIONS),
                "Tus-Max-Size": str(runtime.settings.max_upload_bytes),
                "Tus-Checksum-Algorithm": ",".join(tus_headers.CHECKSUM_ALGORITHMS),
            }
        ),
    )


@router.options("", status_code=204, summary="tus discovery: version, extensions, limits")
async def discover_uploads(runtime: Runtime) -> Response:
    return _discovery(runtime)


@router.options("/{upload_id}", status_code=204, summary="tus discovery (on an upload's URL)")
async def discover_upload(upload_id: str, runtime: Runtime) -> Response:
    return _discovery(runtime)


async def _tracked_chunk(
    request: Request, session: SessionDep, runtime: TusRuntime, upload: TusUpload, offset: int
) -> ChunkResult:
    transfer = await service.start_transfer(runtime, upload)
    request.scope.setdefault("state", {})[TRANSFER_STATE] = transfer
    result = await service.write_chunk(request, session, runtime, upload, offset, transfer)
    if result.file is not None:
        await _completed(transfer, result)
    return result


async def _completed(transfer: Tracker, result: ChunkResult) -> None:
    assert result.file is not None
    await transfer.complete(file=FileRead.of(result.file).model_dump(mode="json"))


def _chunk_headers(runtime: TusRuntime, result: ChunkResult) -> dict[str, str]:
    headers = {
        "Upload-Offset": str(result.offset),
        "Upload-Expires": tus_headers.http_date(result.expires_at),
    }
    if result.file is not None:
        headers["X-File-Id"] = result.file.id
        headers["X-File-Location"] = runtime.settings.absolute_url(file_url(result.file.id))
        del headers["Upload-Expires"]
    return _tus(headers)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[TusVersion],
    responses=error_responses(400, 403, 412, 413, 415) | CHECKSUM_MISMATCH,
    summary="Create an upload (tus creation, creation-with-upload, creation-defer-length)",
)
async def create_upload(
    request: Request, user: TusEditor, session: SessionDep, runtime: Runtime
) -> Response:
    upload = await service.create_upload(session, runtime, user, request.headers)
    location = runtime.settings.absolute_url(upload_url(upload.id))
    result = ChunkResult(0, upload.expires_at)
    if upload.length == 0:
        transfer = await service.start_transfer(runtime, upload)
        request.scope.setdefault("state", {})[TRANSFER_STATE] = transfer
        file = await service.finish_empty(session, runtime, upload, transfer)
        result = ChunkResult(0, upload.expires_at, file)
    elif tus_headers.is_offset_stream(request.headers.get("content-type")):
        result = await _tracked_chunk(request, session, runtime, upload, 0)
    else:
        await service.start_transfer(runtime, upload)  # reserves the id for its watchers
    headers = _chunk_headers(runtime, result) | {"Location": location}
    return Response(status_code=status.HTTP_201_CREATED, headers=headers)


@router.head(
    "/{upload_id}",
    dependencies=[TusVersion],
    responses=error_responses(404, 410, 412),
    summary="An upload's offset (and length, metadata, expiry)",
)
async def read_upload(upload: VisibleUpload) -> Response:
    headers = {
        "Upload-Offset": str(upload.offset),
        "Upload-Expires": tus_headers.http_date(upload.expires_at),
        "Cache-Control": "no-store",
    }
    if upload.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(upload.length)
    if upload.meta:
        headers["Upload-Metadata"] = tus_headers.encode_metadata(upload.meta)
    return Response(status_code=status.HTTP_200_OK, headers=_tus(headers))


@router.patch(
    "/{upload_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[TusVersion],
    responses=error_responses(400, 403, 404, 409, 410, 412, 413, 415, 423) | CHECKSUM_MISMATCH,
    summary="Append a chunk at Upload-Offset (application/offset+octet-stream)",
)
async def write_upload_chunk(
    request: Request, _user: TusEditor, upload: VisibleUpload, session: SessionDep, runtime: Runtime
) -> Response:
    if not tus_headers.is_offset_stream(request.headers.get("content-type")):
        raise OffsetContentTypeRequired()
    offset = tus_headers.upload_offset(request.headers)
    result = await _tracked_chunk(request, session, runtime, upload, offset)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=_chunk_headers(runtime, result))


@router.delete(
    "/{upload_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[TusVersion],
    responses=error_responses(404, 410, 412, 423),
    summary="Terminate an upload and delete its bytes (tus termination)",
)
async def terminate_upload(
    upload: VisibleUpload, session: SessionDep, runtime: Runtime
) -> Response:
    await service.terminate_upload(session, runtime, upload)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=_tus())
