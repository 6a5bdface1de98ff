from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from filesvc.auth.security import TokenSubject, create_access_token, verify_password
from filesvc.deps import ContextDep, SessionDep
from filesvc.errors import InvalidCredentials, error_responses
from filesvc.users.service import get_by_username

router = APIRouter(prefix="/auth", tags=["auth"])


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the scheme's name, not a secret
    expires_in: int


@router.post("/token", responses=error_responses(401), summary="Sign in: a bearer token")
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    context: ContextDep,
    session: SessionDep,
) -> Token:
    user = await get_by_username(session, form.username)
    # Always verify a hash, real or dummy, so timing does not reveal which names exist.
    check = await verify_password(user.password_hash if user else None, form.password)
    if user is None or not check.ok or user.disabled:
        raise InvalidCredentials()
    if check.new_hash:
        user.password_hash = check.new_hash
    ttl = context.settings.access_token_ttl_seconds
    subject = TokenSubject(user.id, user.token_version)
    return Token(access_token=create_access_token(subject, context.secret_key, ttl), expires_in=ttl)
