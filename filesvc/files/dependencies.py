"""The file a route works on, loaded once and checked against the caller (files/access.py).

Every route that takes a `file_id` gets its file through one of these aliases, so none can
forget the check. A file the caller may not read is 404 to a signed-in caller and 401 to
an anonymous one, exactly as for an id that does not exist: ids never leak.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from filesvc.auth.dependencies import CurrentUser, OptionalContentUser, OptionalUser
from filesvc.deps import ReadSessionDep, SessionDep
from filesvc.errors import NotAuthenticated, PermissionDenied
from filesvc.files.access import can_change, can_read
from filesvc.files.errors import FileNotFound
from filesvc.files.models import File
from filesvc.users.models import User


async def load_readable(session: AsyncSession, file_id: str, user: User | None) -> File:
    file = await session.get(File, file_id)
    if file is not None and can_read(user, file):
        return file
    if user is None:
        raise NotAuthenticated()
    raise FileNotFound()


async def readable_file(file_id: str, user: OptionalUser, session: ReadSessionDep) -> File:
    return await load_readable(session, file_id, user)


async def downloadable_file(
    file_id: str, user: OptionalContentUser, session: ReadSessionDep
) -> File:
    return await load_readable(session, file_id, user)


async def changeable_file(file_id: str, user: CurrentUser, session: SessionDep) -> File:
    file = await load_readable(session, file_id, user)
    if not can_change(user, file):
        # The caller may read it, so its existence is no secret: 403, not 404.
        raise PermissionDenied("Only the owner or an admin may change this file.")
    return file


ReadableFile = Annotated[File, Depends(readable_file)]
DownloadableFile = Annotated[File, Depends(downloadable_file)]
ChangeableFile = Annotated[File, Depends(changeable_file)]
