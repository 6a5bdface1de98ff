"""Request bodies for the upload endpoints, which read the stream themselves.

FastAPI would parse (and spool) a form before resolving dependencies, so the handlers
take the raw request instead; these schemas give /docs the same file pickers an
`UploadFile` parameter would.
"""

from typing import Any

_FIELDS: dict[str, Any] = {
    "visibility": {"type": "string", "enum": ["private", "internal", "public"]},
    # Swagger UI pre-fills text fields with their first example ("string" if none) and
    # sends them even when emptied; empty means "not given" on the server.
    "name": {
        "type": "string",
        "description": "Display name; defaults to the file's name.",
        "examples": [""],
    },
    "metadata": {"type": "string", "description": "A JSON object, as text.", "examples": ["{}"]},
}
_CHECKSUM_HEADERS: list[dict[str, Any]] = [
    {
        "name": "X-Checksum-SHA256",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "Hex SHA-256 of the file; a mismatch is 400 checksum_mismatch.",
    },
    {
        "name": "Content-Digest",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "RFC 9530, e.g. `sha-256=:<base64>:`.",
    },
]


# `contentMediaType` is how OpenAPI 3.1 (and FastAPI's UploadFile) marks a file;
# `format: binary` is the 3.0 spelling older Swagger UI builds look for.
_BINARY: dict[str, Any] = {
    "type": "string",
    "format": "binary",
    "contentMediaType": "application/octet-stream",
}


def multipart_upload(*, many: bool) -> dict[str, Any]:
    file_schema: dict[str, Any] = dict(_BINARY)
    if many:
        file_schema = {"type": "array", "items": file_schema}
    return {
        "parameters": [] if many else _CHECKSUM_HEADERS,
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": file_schema, **_FIELDS},
                    }
                }
            },
        },
    }


def raw_upload() -> dict[str, Any]:
    return {
        "parameters": _CHECKSUM_HEADERS,
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": dict(_BINARY)}},
        },
    }
