"""Who is calling: token → user, and role requirements, resolved before any body is read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Query
from fastapi.security import OAuth2PasswordBearer

from filesvc.auth.security import decode_access_token
from filesvc.deps import ContextDep, SessionDep
from filesvc.errors import NotAuthenticated, PermissionDenied
from filesvc.users.models import Role, User

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


async def _user_for_token(token: str | None, context: ContextDep, session: SessionDep) -> User:
    if not token:
        raise NotAuthenticated()
    user_id = decode_access_token(token, context.secret_key)
    # Looked up on every request so a disabled or deleted user is locked out at once.
    user = await session.get(User, user_id) if user_id else None
    if user is None or user.disabled:
        raise NotAuthenticated("Invalid or expired token.")
    return user


async def get_current_user(
    context: ContextDep,
    session: SessionDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> User:
    return await _user_for_token(token, context, session)


async def get_current_user_header_or_query(
    context: ContextDep,
    session: SessionDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    access_token: Annotated[
        str | None,
        Query(description="Token for clients that cannot set headers (`<img>`, `EventSource`)."),
    ] = None,
) -> User:
    return await _user_for_token(token or access_token, context, session)


CurrentUser = Annotated[User, Depends(get_current_user)]
# For content endpoints, which browsers load without headers.
ContentReader = Annotated[User, Depends(get_current_user_header_or_query)]


def require_role(role: Role) -> Callable[[User], Awaitable[User]]:
    async def check_role(user: CurrentUser) -> User:
        if not user.role.at_least(role):
            raise PermissionDenied(f"This needs the {role.value} role.")
        return user

    return check_role


EditorUser = Annotated[User, Depends(require_role(Role.editor))]
AdminUser = Annotated[User, Depends(require_role(Role.admin))]
