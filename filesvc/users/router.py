from __future__ import annotations

from fastapi import APIRouter, Response, status

from filesvc.auth.dependencies import AdminUser, CurrentUser
from filesvc.deps import SessionDep
from filesvc.errors import error_responses
from filesvc.users import service
from filesvc.users.schemas import UserCreate, UserRead, UserUpdate

router = APIRouter(prefix="/users", tags=["users"], responses=error_responses(401))


@router.get("/me")
async def read_current_user(user: CurrentUser) -> UserRead:
    return UserRead.model_validate(user)


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 403, 409))
async def create_user(body: UserCreate, _: AdminUser, session: SessionDep) -> UserRead:
    user = await service.create_user(session, body.username, body.password, body.role)
    return UserRead.model_validate(user)


@router.get("", responses=error_responses(403))
async def list_users(_: AdminUser, session: SessionDep) -> list[UserRead]:
    return [UserRead.model_validate(user) for user in await service.list_users(session)]


@router.patch(
    "/{user_id}",
    responses=error_responses(400, 403, 404, 409),
    summary="Change a user's role, password (voids their tokens) or disabled flag",
)
async def update_user(
    user_id: str, body: UserUpdate, admin: AdminUser, session: SessionDep
) -> UserRead:
    user = await service.get_user(session, user_id)
    return UserRead.model_validate(await service.update_user(session, admin, user, body))


@router.delete(
    "/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(403, 404, 409)
)
async def delete_user(user_id: str, admin: AdminUser, session: SessionDep) -> Response:
    await service.delete_user(session, admin, await service.get_user(session, user_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
