"""GET /events: file changes the caller may read, live, with replay on reconnect."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Response
from fastapi.sse import EventSourceResponse

from filesvc.auth.dependencies import ContentUser
from filesvc.deps import FeedDep, SettingsDep
from filesvc.errors import error_responses
from filesvc.transfers.dependencies import LastEventId, StreamSlot
from filesvc.transfers.streams import EVENT_STREAM, event_stream, sse_body

router = APIRouter(tags=["events"], responses=error_responses(401))


@router.get(
    "/events",
    responses={
        200: {"description": "`file.created`, `file.updated`, …", "content": EVENT_STREAM},
        **error_responses(429),
    },
    response_class=Response,
    summary="Watch file changes: `file.created`, `file.updated`, `file.deleted` (SSE)",
)
async def watch_files(
    user: ContentUser,
    _slot: StreamSlot,
    feed: FeedDep,
    settings: SettingsDep,
    last_event_id: LastEventId,
) -> EventSourceResponse:
    async def body() -> AsyncIterator[bytes]:
        async with feed.watch(user, last_event_id) as watch:
            retry, lifetime = settings.sse_retry_ms, settings.max_stream_seconds
            async for frame in sse_body(watch, retry_ms=retry, lifetime=lifetime):
                yield frame

    return event_stream(body())
