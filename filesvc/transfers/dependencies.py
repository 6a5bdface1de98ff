"""Transfers as dependencies: the id a request names, the tracker its route reports to,
the transfer a watcher may see, and the caller's event-stream slot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated

from fastapi import Depends, Header, Query, Request

from filesvc.auth.dependencies import (
    ContentUser,
    CurrentUser,
    HeaderToken,
    QueryToken,
    user_for_token,
)
from filesvc.deps import ContextDep, TransfersDep
from filesvc.errors import error_responses
from filesvc.middleware import DIRECTION_STATE
from filesvc.observability.metrics import Metrics, upload_outcome
from filesvc.transfers.errors import InvalidTransferId, StreamOver
from filesvc.transfers.schemas import TRANSFER_ID_RE, Direction
from filesvc.transfers.service import UNTRACKED, Tracker, TransferHub, TransferRecord
from filesvc.users.models import User

TRANSFER_STATE = "transfer"  # the request's tracker, in scope["state"] (see transfers/asgi.py)
# What naming a transfer can answer: a malformed id (400), one taken by another (409).
TRANSFER_ERRORS = error_responses(400, 409)


async def requested_transfer_id(
    x_transfer_id: Annotated[
        str | None,
        Header(
            description="Track this request as a transfer with this id.",
            json_schema_extra={"pattern": TRANSFER_ID_RE.pattern},
        ),
    ] = None,
    transfer_id: Annotated[
        str | None,
        Query(
            description="The same as the `X-Transfer-Id` header.",
            json_schema_extra={"pattern": TRANSFER_ID_RE.pattern},
        ),
    ] = None,
) -> str | None:
    # Both are checked when both are given: a bad one is never hidden by the other.
    for value in (x_transfer_id, transfer_id):
        if value is not None and not TRANSFER_ID_RE.match(value):
            raise InvalidTransferId()
    return x_transfer_id or transfer_id


TransferId = Annotated[str | None, Depends(requested_transfer_id)]


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


@asynccontextmanager
async def _tracked(
    request: Request,
    hub: TransferHub,
    transfer_id: str | None,
    user: User | None,
    direction: Direction,
) -> AsyncIterator[Tracker]:
    request.scope.setdefault("state", {})[DIRECTION_STATE] = direction
    if transfer_id is None or request.method == "HEAD":
        yield UNTRACKED
        return
    total = _declared_length(request) if direction == "upload" else None
    transfer = await hub.begin(transfer_id, user, direction, total)
    request.scope.setdefault("state", {})[TRANSFER_STATE] = transfer
    try:
        yield transfer
    except BaseException as exc:
        await transfer.fail_with(exc)
        raise
    if direction == "upload":
        # A route that returned without completing it (it should not) still ends it.
        await transfer.complete()


@contextmanager
def counted_upload(metrics: Metrics) -> Iterator[None]:
    """An upload counted as active while it runs, then by its outcome."""
    metrics.uploads_active.inc()
    outcome: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        outcome = exc
        raise
    finally:
        metrics.uploads_active.dec()
        metrics.uploads.labels(upload_outcome(outcome)).inc()


async def upload_tracker(
    request: Request,
    user: CurrentUser,
    context: ContextDep,
    transfer_id: TransferId,
) -> AsyncIterator[Tracker]:
    """Every upload route goes through here: it is also where uploads are counted."""
    with counted_upload(context.metrics):
        async with _tracked(request, context.transfers, transfer_id, user, "upload") as tracker:
            yield tracker


async def download_tracker(
    request: Request,
    context: ContextDep,
    transfer_id: TransferId,
    token: HeaderToken,
    access_token: QueryToken = None,
) -> AsyncIterator[Tracker]:
    """Counted as the body is sent, by transfers/asgi.py; here only failures before that.

    The caller is looked up only for a tracked download (its owner): share links and
    public files need no token, and an untracked request must not start needing one."""
    token = token or access_token
    user = await user_for_token(token, context) if transfer_id and token else None
    async with _tracked(request, context.transfers, transfer_id, user, "download") as tracker:
        yield tracker


# scope="function": the final event is out before the response, so a client that reads
# the response and then subscribes gets it at once.
UploadTracker = Annotated[Tracker, Depends(upload_tracker, scope="function")]
DownloadTracker = Annotated[Tracker, Depends(download_tracker, scope="function")]


async def stream_slot(user: ContentUser, context: ContextDep) -> AsyncIterator[None]:
    """One of the caller's open streams, held until the stream ends."""
    with context.streams.slot(user.id):
        yield


StreamSlot = Annotated[None, Depends(stream_slot)]


async def last_event_id(
    last_event_id: Annotated[
        str | None, Header(description="Sent by EventSource on reconnect: resume after it.")
    ] = None,
) -> int | None:
    return int(last_event_id) if last_event_id is not None and last_event_id.isdigit() else None


LastEventId = Annotated[int | None, Depends(last_event_id)]


async def watchable_transfer(
    transfer_id: str, user: ContentUser, hub: TransfersDep, last_seen: LastEventId
) -> TransferRecord:
    if not TRANSFER_ID_RE.match(transfer_id):
        raise InvalidTransferId()
    record = await hub.watchable(transfer_id, user)
    if record.last.final and last_seen is not None and last_seen >= record.last.seq:
        raise StreamOver()
    return record


WatchableTransfer = Annotated[TransferRecord, Depends(watchable_transfer)]
