"""File records. Functions flush; committing (and ordering it against storage) is the caller's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from filesvc.files.access import readable_by
from filesvc.files.ingest import StoredBlob
from filesvc.files.models import File, Visibility
from filesvc.files.names import clean_name, resolve_content_type
from filesvc.files.pagination import SORT_COLUMNS, after_cursor, decode_cursor, encode_cursor
from filesvc.files.schemas import FileListParams, FileUpdate
from filesvc.users.models import User


async def used_bytes(session: AsyncSession, owner_id: str) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(File.size), 0)).where(File.owner_id == owner_id)
    )
    return int(total or 0)


def new_file(
    owner: User,
    blob: StoredBlob,
    *,
    name: str | None = None,
    visibility: Visibility | None = None,
    metadata: dict[str, Any] | None = None,
) -> File:
    """The row for a stored blob, in no session yet."""
    display_name = clean_name(name or blob.filename or "")
    return File(
        name=display_name,
        size=blob.size,
        content_type=resolve_content_type(blob.content_type, display_name),
        sha256=blob.sha256,
        visibility=visibility or Visibility.private,
        owner_id=owner.id,
        meta=metadata or {},
        storage_key=blob.key,
    )


def replace_content(file: File, blob: StoredBlob) -> str:
    """Point the row at a new blob; return the old key, to delete once committed."""
    old_key = file.storage_key
    file.storage_key = blob.key
    file.size = blob.size
    file.sha256 = blob.sha256
    if blob.content_type:
        file.content_type = resolve_content_type(blob.content_type, file.name)
    return old_key


async def list_files(
    session: AsyncSession, reader: User, params: FileListParams
) -> tuple[list[File], str | None]:
    column = SORT_COLUMNS[params.sort]
    query = select(File).where(readable_by(reader))
    if params.q:
        query = query.where(File.name.icontains(params.q, autoescape=True))
    if params.content_type:
        content_type = params.content_type.lower()
        if content_type.endswith("/"):
            query = query.where(File.content_type.startswith(content_type, autoescape=True))
        else:
            query = query.where(File.content_type == content_type)
    if params.owner_id:
        query = query.where(File.owner_id == params.owner_id)
    if params.visibility:
        query = query.where(File.visibility == params.visibility)
    if params.cursor:
        value, file_id = decode_cursor(params.cursor, params.sort, params.order)
        query = query.where(after_cursor(params.sort, params.order, value, file_id))
    if params.order == "asc":
        query = query.order_by(column.asc(), File.id.asc())
    else:
        query = query.order_by(column.desc(), File.id.desc())
    # One extra row tells whether another page exists.
    rows = list((await session.scalars(query.limit(params.limit + 1))).all())
    next_cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        next_cursor = encode_cursor(params.sort, params.order, rows[-1])
    return rows, next_cursor


async def update_file(session: AsyncSession, file: File, change: FileUpdate) -> File:
    if change.name is not None:
        file.name = change.name
    if change.visibility is not None:
        file.visibility = change.visibility
    if change.metadata is not None:
        file.meta = change.metadata
    await session.flush()
    return file
