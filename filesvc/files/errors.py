from filesvc.errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType

# What the access statuses mean on the routes that name a file (OpenAPI descriptions).
NOT_READABLE = "`file_not_found`: no such file, or one you may not read (the two look alike)."
ANONYMOUS_NOT_PUBLIC = (
    "`not_authenticated`: no valid token, and the file is not public (or does not exist)."
)
NOT_CHANGEABLE = "`permission_denied`: you may read the file but not change it (owner or admin)."


class FileNotFound(NotFound):
    code = "file_not_found"
    detail = "File not found."


class UploadTooLarge(PayloadTooLarge):
    code = "upload_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The upload is larger than the limit of {limit} bytes.")


class QuotaExceeded(PayloadTooLarge):
    code = "quota_exceeded"
    detail = "The upload would take you over your storage quota."


class ContentTypeNotAllowed(UnsupportedMediaType):
    code = "content_type_not_allowed"

    def __init__(self, content_type: str) -> None:
        super().__init__(f"Files of type {content_type!r} are not accepted here.")


class ChecksumMismatch(BadRequest):
    code = "checksum_mismatch"
    detail = "The uploaded bytes do not match the checksum the client sent."


class InvalidChecksumHeader(BadRequest):
    code = "invalid_checksum"


class MalformedMultipart(BadRequest):
    code = "malformed_multipart"


class MissingFilePart(BadRequest):
    code = "missing_file"
    detail = "The form has no `file` part."


class TooManyFiles(BadRequest):
    code = "too_many_files"


class InvalidField(BadRequest):
    code = "invalid_field"


class MultipartRequired(UnsupportedMediaType):
    code = "multipart_required"
    detail = "Send the upload as multipart/form-data with a boundary."


class InvalidCursor(BadRequest):
    code = "invalid_cursor"
    detail = "The cursor is invalid or belongs to another sort order."


class UploadIncomplete(BadRequest):
    code = "upload_incomplete"
    detail = "The request body ended before the declared length."
