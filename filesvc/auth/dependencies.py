"""Who is calling: token → user, and role requirements, resolved before any body is read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Query
from fastapi.security import OAuth2PasswordBearer
from fastapi.security.utils import get_authorization_scheme_param

from filesvc.auth.security import TokenSubject, decode_access_token
from filesvc.deps import ContextDep
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


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, read as `oauth2_scheme` reads it
    (any other scheme is no token), for the layers that answer before the router."""
    scheme, token = get_authorization_scheme_param(authorization)
    return token if authorization and scheme.lower() == "bearer" else None


def _accepts(user: User | None, subject: TokenSubject) -> bool:
    return user is not None and not user.disabled and user.token_version == subject.version


async def user_for_token(token: str | None, context: ContextDep) -> User:
    """The token's user, read only (auth/cache.py): a disabled or deleted user, or a
    changed password, locks the token out at once here and within a second everywhere."""
    if not token:
        raise NotAuthenticated()
    subject = decode_access_token(token, context.secret_key)
    if subject is None:
        raise NotAuthenticated("Invalid or expired token.")
    user = context.users.get(subject.user_id)
    if not _accepts(user, subject):  # unknown here, or refused: the database decides
        user = await context.users.load(subject.user_id)
    if user is None or not _accepts(user, subject):
        raise NotAuthenticated("Invalid or expired token.")
    return user


async def get_current_user(context: ContextDep, token: HeaderToken) -> User:
    return await user_for_token(token, context)


async def get_optional_user(context: ContextDep, token: HeaderToken) -> User | None:
    """None for a caller who sent no token; a token that does not check out is still 401."""
    return await user_for_token(token, context) if token else None


async def get_optional_user_header_or_query(
    context: ContextDep, token: HeaderToken, access_token: QueryToken = None
) -> User | None:
    token = token or access_token
    return await user_for_token(token, context) if token else None


async def get_current_user_header_or_query(
    context: ContextDep, token: HeaderToken, access_token: QueryToken = None
) -> User:
    return await user_for_token(token or access_token, context)


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
