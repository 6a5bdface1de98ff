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
# A dictionary of `algorithm=:base64:` members, as files/checksums.py reads it.
_DIGEST_MEMBER = r"\s*[a-z0-9-]+\s*=\s*:[A-Za-z0-9+/=]*:\s*"
_DIGEST_FIELD = f"^{_DIGEST_MEMBER}(,{_DIGEST_MEMBER})*$"
_CHECKSUM_HEADERS: list[dict[str, Any]] = [
    {
        "name": "X-Checksum-SHA256",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
        "description": "Hex SHA-256 of the file; a mismatch is 400 checksum_mismatch.",
    },
    {
        "name": "Content-Digest",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": _DIGEST_FIELD},
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
        file_schema = {"type": "array", "items": file_schema, "minItems": 1}
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
