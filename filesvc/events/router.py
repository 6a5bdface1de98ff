"""GET /events: file changes the caller may read, live, with replay on reconnect."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent

from filesvc.auth.dependencies import ContentUser
from filesvc.deps import FeedDep, SettingsDep
from filesvc.errors import error_responses
from filesvc.transfers.dependencies import LastEventId, StreamSlot
from filesvc.transfers.streams import bounded

router = APIRouter(tags=["events"], responses=error_responses(401))


@router.get(
    "/events",
    response_class=EventSourceResponse,
    responses=error_responses(429),
    summary="Watch file changes: `file.created`, `file.updated`, `file.deleted` (SSE)",
)
async def watch_files(
    user: ContentUser,
    _slot: StreamSlot,
    feed: FeedDep,
    settings: SettingsDep,
    last_event_id: LastEventId,
) -> AsyncIterator[ServerSentEvent]:
    yield ServerSentEvent(retry=settings.sse_retry_ms)
    async for event in bounded(feed.events(user, last_event_id), settings.max_stream_seconds):
        yield ServerSentEvent(id=str(event.id), event=event.kind, raw_data=event.data_json)
