"""Chained file dependencies: a valid id → a file the caller may read → one they may change."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from filesvc.auth.dependencies import ContentReader, CurrentUser
from filesvc.deps import SessionDep
from filesvc.errors import PermissionDenied
from filesvc.files import service
from filesvc.files.errors import FileNotFound
from filesvc.files.models import File
from filesvc.users.models import Role, User


def can_read(user: User, file: File) -> bool:
    # Every signed-in user may read every file until visibility rules arrive.
    return True


def can_change(user: User, file: File) -> bool:
    return user.role is Role.admin or (user.role.at_least(Role.editor) and file.owner_id == user.id)


async def valid_file(file_id: str, session: SessionDep) -> File:
    return await service.get_file(session, file_id)


ValidFile = Annotated[File, Depends(valid_file)]


# The caller is resolved before the id is looked up: strangers get 401, never a 404 hint.
async def readable_file(user: CurrentUser, file: ValidFile) -> File:
    if not can_read(user, file):
        raise FileNotFound()  # 404, not 403: ids must not leak
    return file


async def downloadable_file(user: ContentReader, file: ValidFile) -> File:
    return await readable_file(user, file)


async def changeable_file(user: CurrentUser, file: Annotated[File, Depends(readable_file)]) -> File:
    if not can_change(user, file):
        raise PermissionDenied("Only the owner or an admin may change this file.")
    return file


ReadableFile = Annotated[File, Depends(readable_file)]
DownloadableFile = Annotated[File, Depends(downloadable_file)]
ChangeableFile = Annotated[File, Depends(changeable_file)]
