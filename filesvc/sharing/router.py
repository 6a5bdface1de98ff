"""Share links: `POST /files/{id}/links` makes one, `GET /shared/{token}` serves it, no token."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Request, Response, status

from filesvc.auth.dependencies import CurrentUser
from filesvc.deps import ContextDep
from filesvc.errors import error_responses
from filesvc.files.access import can_change
from filesvc.files.dependencies import ChangeableFile
from filesvc.files.downloads import DOWNLOAD_RESPONSES, file_response
from filesvc.files.errors import NOT_CHANGEABLE, NOT_READABLE, FileNotFound
from filesvc.files.models import File
from filesvc.sharing.errors import InvalidExpiry, InvalidLink, LinkOutdated, LinkRevoked
from filesvc.sharing.schemas import MAX_EXPIRES_IN, LinkCreate, LinkRead
from filesvc.sharing.tokens import DOWNLOAD, PINNED_HEX_CHARS, ShareGrant, sign_grant, verify_grant
from filesvc.transfers.dependencies import DownloadTracker
from filesvc.users.models import User

router = APIRouter(tags=["sharing"])
# What follows this segment is a credential: the access log prints `{token}` instead.
SHARED_SEGMENT = "shared"
SHARED_PATH = f"/{SHARED_SEGMENT}/{{token}}"
# The token is in the URL: never hand it on to another site.
SHARED_RESPONSE_HEADERS = {"referrer-policy": "no-referrer"}
LINK_ERRORS = error_responses(
    401,
    403,
    404,
    descriptions={
        401: "Only for a tracked download (`X-Transfer-Id`) whose token is not valid; "
        "the link itself needs no token.",
        403: "`invalid_link`: not a link this service signed, or edited; "
        "`link_expired`: past its expiry; "
        "`link_outdated`: the file's content was replaced since the link was made; "
        "`link_revoked`: its maker was disabled or deleted, or may no longer change the file.",
        404: "`file_not_found`: the file was deleted.",
    },
)


@router.post(
    "/files/{file_id}/links",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        400,
        401,
        403,
        404,
        descriptions={
            400: "`invalid_expiry`: `expires_in` is not between 1 and 604800 seconds.",
            403: NOT_CHANGEABLE,
            404: NOT_READABLE,
        },
    ),
    summary="Make a signed download link that needs no token (owner or admin)",
)
async def create_link(
    file: ChangeableFile, user: CurrentUser, context: ContextDep, body: LinkCreate | None = None
) -> LinkRead:
    expires_in = (body or LinkCreate()).expires_in
    if not 0 < expires_in <= MAX_EXPIRES_IN:
        raise InvalidExpiry(f"`expires_in` must be between 1 and {MAX_EXPIRES_IN} seconds.")
    grant = ShareGrant(
        file_id=file.id,
        action=DOWNLOAD,
        sha256_prefix=file.sha256[:PINNED_HEX_CHARS],
        creator_id=user.id,
        expires_at=int(time.time()) + expires_in,
    )
    path = "/api/v1" + SHARED_PATH.format(token=sign_grant(grant, context.secret_key))
    return LinkRead(
        url=context.settings.absolute_url(path),
        expires_at=datetime.fromtimestamp(grant.expires_at, UTC),
    )


async def shared_file(token: str, context: ContextDep) -> File:
    """The file a share link gives, checked as the link's route checks it (files/hot_reads.py
    answers small downloads with it too)."""
    grant = verify_grant(token, context.secret_key, time.time())
    # A link names one action; this route only downloads.
    if grant.action != DOWNLOAD:
        raise InvalidLink()
    reads = context.db.point_reads
    file = await reads.get(File, grant.file_id)
    if file is None:
        raise FileNotFound()
    if not grant.pins(file.sha256):
        raise LinkOutdated()
    # A link is only as good as its maker's right to share: it dies with their account
    # or their access to the file.
    creator = await reads.get(User, grant.creator_id)
    if creator is None or creator.disabled or not can_change(creator, file):
        raise LinkRevoked()
    return file


@router.get(
    SHARED_PATH,
    responses={**DOWNLOAD_RESPONSES, **LINK_ERRORS},
    response_class=Response,
    summary="Download through a share link (no token; ranges and conditions as usual)",
)
@router.head(
    SHARED_PATH,
    responses={**DOWNLOAD_RESPONSES, **LINK_ERRORS},
    response_class=Response,
    summary="A share link's download headers",
)
async def download_shared_file(
    token: str,
    request: Request,
    context: ContextDep,
    _transfer: DownloadTracker,
    disposition: Literal["attachment", "inline"] = "attachment",
) -> Response:
    file = await shared_file(token, context)
    response = await file_response(context.storage, context.small_blobs, file, request, disposition)
    response.headers.update(SHARED_RESPONSE_HEADERS)
    return response
