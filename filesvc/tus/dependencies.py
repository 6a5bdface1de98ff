"""tus as dependencies: the shared runtime, the version check, and the upload a caller may see."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Header, Request

from filesvc.auth.dependencies import ContentUser
from filesvc.deps import SessionDep
from filesvc.errors import PermissionDenied
from filesvc.openapi import exactly
from filesvc.tus import headers as tus_headers
from filesvc.tus.errors import TUS_VERSION, UploadExpired, UploadNotFound
from filesvc.tus.models import TusUpload
from filesvc.tus.service import TusRuntime, is_expired
from filesvc.users.models import Role, User

TUS_STATE = "tus"  # app.state.tus, built by the lifespan


async def get_runtime(request: Request) -> TusRuntime:
    return cast(TusRuntime, getattr(request.app.state, TUS_STATE))


Runtime = Annotated[TusRuntime, Depends(get_runtime)]


async def tus_version(
    request: Request,
    tus_resumable: Annotated[
        str | None,
        Header(description="Must be `1.0.0`.", json_schema_extra=exactly(TUS_VERSION)),
    ] = None,
) -> None:
    tus_headers.check_version(request.headers)


TusVersion = Depends(tus_version)


async def tus_editor(user: ContentUser) -> User:
    """Signed in by header or `?access_token=`, with the editor role (as POST /files)."""
    if not user.role.at_least(Role.editor):
        raise PermissionDenied(f"This needs the {Role.editor.value} role.")
    return user


TusEditor = Annotated[User, Depends(tus_editor)]


async def visible_upload(upload_id: str, user: ContentUser, session: SessionDep) -> TusUpload:
    """The upload, for its owner and admins; 404 for anyone else, 410 once it expired."""
    upload = await session.get(TusUpload, upload_id) if len(upload_id) <= 64 else None
    if upload is None or not (user.role is Role.admin or upload.owner_id == user.id):
        raise UploadNotFound()
    if is_expired(upload):
        raise UploadExpired()
    return upload


VisibleUpload = Annotated[TusUpload, Depends(visible_upload)]
