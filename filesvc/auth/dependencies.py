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

HeaderToken = Annotated[str | None, Depends(oauth2_scheme)]
QueryToken = Annotated[
    str | None,
    Query(
        description="Token for clients that cannot set headers (`<img>`, `EventSource`). "
        "Never logged.",
    ),
]


async def user_for_token(token: str | None, context: ContextDep, session: SessionDep) -> User:
    if not token:
        raise NotAuthenticated()
    subject = decode_access_token(token, context.secret_key)
    # Looked up on every request so a disabled or deleted user, or a changed password,
    # locks the token out at once.
    user = await session.get(User, subject.user_id) if subject else None
    if user is None or user.disabled or subject is None or subject.version != user.token_version:
        raise NotAuthenticated("Invalid or expired token.")
    return user


async def get_current_user(context: ContextDep, session: SessionDep, token: HeaderToken) -> User:
    return await user_for_token(token, context, session)


async def get_optional_user(
    context: ContextDep, session: SessionDep, token: HeaderToken
) -> User | None:
    """None for a caller who sent no token; a token that does not check out is still 401."""
    return await user_for_token(token, context, session) if token else None


async def get_optional_user_header_or_query(
    context: ContextDep, session: SessionDep, token: HeaderToken, access_token: QueryToken = None
) -> User | None:
    token = token or access_token
    return await user_for_token(token, context, session) if token else None


async def get_current_user_header_or_query(
    context: ContextDep, session: SessionDep, token: HeaderToken, access_token: QueryToken = None
) -> User:
    return await user_for_token(token or access_token, context, session)


CurrentUser = Annotated[User, Depends(get_current_user)]
# Signed in, by header or `?access_token=` (EventSource and WebSocket clients).
ContentUser = Annotated[User, Depends(get_current_user_header_or_query)]
# Routes that public files make readable without a token.
OptionalUser = Annotated[User | None, Depends(get_optional_user)]
# The same for content routes, which browsers load without headers (`?access_token=`).
OptionalContentUser = Annotated[User | None, Depends(get_optional_user_header_or_query)]


def require_role(role: Role) -> Callable[[User], Awaitable[User]]:
    async def check_role(user: CurrentUser) -> User:
        if not user.role.at_least(role):
            raise PermissionDenied(f"This needs the {role.value} role.")
        return user

    return check_role


EditorUser = Annotated[User, Depends(require_role(Role.editor))]
AdminUser = Annotated[User, Depends(require_role(Role.admin))]
