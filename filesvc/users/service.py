"""User records. Functions flush; the caller's session commits."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Sequence

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from filesvc.auth.security import hash_password
from filesvc.db import Database
from filesvc.files.models import File
from filesvc.users.errors import CannotChangeSelf, UsernameTaken, UserNotFound, UserOwnsFiles
from filesvc.users.models import Role, User
from filesvc.users.schemas import UserUpdate

ADMIN_USERNAME = "admin"


async def get_by_username(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(User.username == username))


async def get_user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise UserNotFound()
    return user


async def list_users(session: AsyncSession) -> Sequence[User]:
    return (await session.scalars(select(User).order_by(User.username))).all()


async def create_user(session: AsyncSession, username: str, password: str, role: Role) -> User:
    user = User(username=username, password_hash=await hash_password(password), role=role)
    try:
        async with session.begin_nested():
            session.add(user)
    except IntegrityError:
        raise UsernameTaken() from None
    return user


async def update_user(session: AsyncSession, actor: User, user: User, change: UserUpdate) -> User:
    demotes = change.role is not None and change.role != Role.admin
    if user.id == actor.id and (demotes or change.disabled):
        raise CannotChangeSelf()
    if change.role is not None:
        user.role = change.role
    if change.disabled is not None:
        user.disabled = change.disabled
    if change.password is not None:
        await set_password(user, change.password)
    await session.flush()
    return user


async def set_password(user: User, password: str) -> None:
    """New hash, and every token issued before it stops working."""
    user.password_hash = await hash_password(password)
    user.token_version += 1


async def delete_user(session: AsyncSession, actor: User, user: User) -> None:
    if user.id == actor.id:
        raise CannotChangeSelf()
    if await session.scalar(select(exists().where(File.owner_id == user.id))):
        raise UserOwnsFiles()
    await session.delete(user)
    await session.flush()


async def ensure_admin(db: Database, password: str | None) -> None:
    """On first start with no users, create `admin` (printing a generated password once)."""
    async with db.sessionmaker() as session:
        if await session.scalar(select(func.count()).select_from(User)):
            return
        generated = password is None
        password = password or secrets.token_urlsafe(12)
        session.add(
            User(
                username=ADMIN_USERNAME,
                password_hash=await hash_password(password),
                role=Role.admin,
            )
        )
        try:
            await session.commit()
        except IntegrityError:
            return  # another worker created it first
    if generated:
        # Printed straight to the console, never through logging, and only this once.
        print(
            f"filesvc: created user '{ADMIN_USERNAME}' with password: {password}\n"
            "filesvc: set FILESVC_ADMIN_PASSWORD to choose it instead.",
            file=sys.stderr,
            flush=True,
        )
