from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from filesvc.files.models import File, Visibility
from filesvc.files.names import clean_name

MAX_METADATA_BYTES = 16 * 1024


def check_metadata_size(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value, separators=(",", ":"))) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata must be at most {MAX_METADATA_BYTES} bytes as JSON")
    return value


FileName = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(clean_name)]
Metadata = Annotated[dict[str, Any], AfterValidator(check_metadata_size)]


def file_url(file_id: str) -> str:
    return f"/api/v1/files/{file_id}"


def content_url(file_id: str) -> str:
    return f"{file_url(file_id)}/content"


class FileRead(BaseModel):
    id: str
    name: str
    size: int
    content_type: str
    sha256: str
    visibility: Visibility
    owner_id: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    content_url: str

    @classmethod
    def of(cls, file: File) -> FileRead:
        return cls(
            id=file.id,
            name=file.name,
            size=file.size,
            content_type=file.content_type,
            sha256=file.sha256,
            visibility=file.visibility,
            owner_id=file.owner_id,
            metadata=file.meta,
            created_at=file.created_at,
            updated_at=file.updated_at,
            content_url=content_url(file.id),
        )


class FileUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FileName | None = None
    visibility: Visibility | None = None
    metadata: Metadata | None = Field(default=None, description="Replaces the whole object.")


class FileBatch(BaseModel):
    items: list[FileRead]


class FilePage(BaseModel):
    items: list[FileRead]
    next_cursor: str | None


class SortField(StrEnum):
    created_at = "created_at"
    name = "name"
    size = "size"


class FileListParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=1024)
    q: str | None = Field(default=None, max_length=255, description="Matches within the name.")
    content_type: str | None = Field(
        default=None, max_length=255, description="Exact type, or a prefix ending in `/`."
    )
    owner_id: str | None = None
    visibility: Visibility | None = None
    sort: SortField = SortField.created_at
    order: Literal["asc", "desc"] = "desc"
