from __future__ import annotations

from fastapi import APIRouter, Response, status

from filesvc.auth.dependencies import AdminUser, CurrentUser
from filesvc.deps import SessionDep
from filesvc.users import service
from filesvc.users.schemas import UserCreate, UserRead, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me")
async def read_current_user(user: CurrentUser) -> UserRead:
    return UserRead.model_validate(user)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, _: AdminUser, session: SessionDep) -> UserRead:
    user = await service.create_user(session, body.username, body.password, body.role)
    return UserRead.model_validate(user)


@router.get("")
async def list_users(_: AdminUser, session: SessionDep) -> list[UserRead]:
    return [UserRead.model_validate(user) for user in await service.list_users(session)]


@router.patch("/{user_id}")
async def update_user(
    user_id: str, body: UserUpdate, admin: AdminUser, session: SessionDep
) -> UserRead:
    user = await service.get_user(session, user_id)
    return UserRead.model_validate(await service.update_user(session, admin, user, body))


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(user_id: str, admin: AdminUser, session: SessionDep) -> Response:
    await service.delete_user(session, admin, await service.get_user(session, user_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
