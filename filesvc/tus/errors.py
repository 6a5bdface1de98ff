"""tus errors: each knows its status and code, and carries `Tus-Resumable` as the spec asks."""

from __future__ import annotations

from filesvc.errors import AppError, BadRequest, Conflict, NotFound, UnsupportedMediaType

TUS_VERSION = "1.0.0"


class TusError(AppError):
    def __init__(self, detail: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, headers={"Tus-Resumable": TUS_VERSION, **(headers or {})})


class UploadNotFound(TusError, NotFound):
    code = "upload_not_found"
    detail = "Upload not found."


class UploadExpired(TusError):
    status_code = 410
    code = "upload_expired"
    detail = "The upload expired; start a new one."


class UnsupportedVersion(TusError):
    status_code = 412
    code = "tus_version_unsupported"
    detail = "Send `Tus-Resumable: 1.0.0`."

    def __init__(self) -> None:
        super().__init__(headers={"Tus-Version": TUS_VERSION})


class OffsetMismatch(TusError, Conflict):
    code = "upload_offset_mismatch"

    def __init__(self, offset: int) -> None:
        super().__init__(
            f"Upload-Offset does not match the upload's offset ({offset}); ask with HEAD.",
            headers={"Upload-Offset": str(offset)},
        )


class UploadLocked(TusError):
    status_code = 423
    code = "upload_locked"
    detail = "Another request is writing to this upload; retry once it is done."


class OffsetContentTypeRequired(TusError, UnsupportedMediaType):
    code = "offset_octet_stream_required"
    detail = "Send the chunk as `Content-Type: application/offset+octet-stream`."


class InvalidTusHeader(TusError, BadRequest):
    code = "invalid_tus_header"


class LengthExceeded(TusError):
    status_code = 413
    code = "upload_length_exceeded"
    detail = "The chunk goes past the upload's Upload-Length."


class ChunkChecksumMismatch(TusError):
    status_code = 460
    code = "checksum_mismatch"
    detail = "The chunk does not match its Upload-Checksum; it was discarded."


class UploadTerminated(TusError, NotFound):
    code = "upload_terminated"
    detail = "The upload was terminated."
