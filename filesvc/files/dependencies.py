"""The file a route works on, loaded once and checked against the caller (files/access.py).

Every route that takes a `file_id` gets its file through one of these aliases, so none can
forget the check. A file the caller may not read is 404 to a signed-in caller and 401 to
an anonymous one, exactly as for an id that does not exist: ids never leak.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from filesvc.auth.dependencies import CurrentUser, OptionalContentUser, OptionalUser
from filesvc.deps import ContextDep, SessionDep
from filesvc.errors import NotAuthenticated, PermissionDenied
from filesvc.files.access import can_change, can_read
from filesvc.files.errors import FileNotFound
from filesvc.files.models import File
from filesvc.users.models import User


def check_readable(file: File | None, user: User | None) -> File:
    if file is not None and can_read(user, file):
        return file
    if user is None:
        raise NotAuthenticated()
    raise FileNotFound()


async def readable_file(file_id: str, user: OptionalUser, context: ContextDep) -> File:
    # Read-only routes take the row without a session (db.point_reads).
    return check_readable(await context.db.point_reads.get(File, file_id), user)


async def downloadable_file(file_id: str, user: OptionalContentUser, context: ContextDep) -> File:
    return check_readable(await context.db.point_reads.get(File, file_id), user)


async def changeable_file(file_id: str, user: CurrentUser, session: SessionDep) -> File:
    # Loaded in the route's session, which changes it.
    file = check_readable(await session.get(File, file_id), user)
    if not can_change(user, file):
        # The caller may read it, so its existence is no secret: 403, not 404.
        raise PermissionDenied("Only the owner or an admin may change this file.")
    return file


ReadableFile = Annotated[File, Depends(readable_file)]
DownloadableFile = Annotated[File, Depends(downloadable_file)]
ChangeableFile = Annotated[File, Depends(changeable_file)]
