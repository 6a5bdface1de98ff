"""Reserving transfers and watching them: SSE, or the same events over a WebSocket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Response, WebSocket, status
from fastapi.sse import EventSourceResponse
from starlette.websockets import WebSocketDisconnect

from filesvc.auth.dependencies import CurrentUser, user_for_token
from filesvc.deps import AppContext, SettingsDep, TransfersDep
from filesvc.errors import AppError, error_response, error_responses
from filesvc.transfers.dependencies import LastEventId, StreamSlot, WatchableTransfer
from filesvc.transfers.errors import InvalidTransferId
from filesvc.transfers.schemas import TRANSFER_ID_RE, TransferCreated, events_url
from filesvc.transfers.streams import EVENT_STREAM, event_stream, sse_body

router = APIRouter(prefix="/transfers", tags=["transfers"], responses=error_responses(401))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Reserve a transfer id to name an upload or download with (`X-Transfer-Id`)",
)
async def create_transfer(user: CurrentUser, hub: TransfersDep) -> TransferCreated:
    transfer_id = await hub.reserve(user)
    return TransferCreated(id=transfer_id, events_url=events_url(transfer_id))


@router.get(
    "/{transfer_id}/events",
    responses={
        200: {"description": "`progress`, then `complete` or `failed`.", "content": EVENT_STREAM},
        204: {"description": "Reconnected after the final event: nothing more will come."},
        **error_responses(400, 404, 429),
    },
    response_class=Response,
    summary="Watch a transfer: `progress` events, then `complete` or `failed` (SSE)",
)
async def watch_transfer(
    record: WatchableTransfer,
    _slot: StreamSlot,
    hub: TransfersDep,
    settings: SettingsDep,
    last_event_id: LastEventId,
) -> EventSourceResponse:
    async def body() -> AsyncIterator[bytes]:
        async with hub.watch(record.id, last_event_id) as watch:
            retry, lifetime = settings.sse_retry_ms, settings.max_stream_seconds
            async for frame in sse_body(watch, retry_ms=retry, lifetime=lifetime):
                yield frame

    return event_stream(body())


@router.websocket("/{transfer_id}/ws")
async def watch_transfer_ws(
    websocket: WebSocket, transfer_id: str, access_token: str | None = None
) -> None:
    """The same events as JSON messages, `{"event": "progress", "data": {...}}`; refusals
    are the same HTTP errors (401, 404, 429) where the server can send them."""
    context: AppContext = websocket.app.state.context
    token = access_token or _bearer(websocket)
    try:
        if not TRANSFER_ID_RE.match(transfer_id):
            raise InvalidTransferId()
        user = await user_for_token(token, context)
        record = await context.transfers.watchable(transfer_id, user)
        with context.streams.slot(user.id):
            await websocket.accept()
            await _send_until_disconnect(websocket, context, record.id)
    except AppError as error:
        await _deny(websocket, error)


def _bearer(websocket: WebSocket) -> str | None:
    scheme, _, value = websocket.headers.get("authorization", "").partition(" ")
    return value if scheme.lower() == "bearer" and value else None


async def _send_until_disconnect(
    websocket: WebSocket, context: AppContext, transfer_id: str
) -> None:
    async def send_events() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + context.settings.max_stream_seconds
        async with context.transfers.watch(transfer_id, None) as watch:
            while not watch.done and (remaining := deadline - loop.time()) > 0:
                event = await watch.next(remaining)
                if event is not None:
                    await websocket.send_text(event.websocket_text())
        await websocket.close()

    async def until_disconnect() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    # Whichever ends first ends the other: no task outlives the socket.
    tasks = {asyncio.create_task(send_events()), asyncio.create_task(until_disconnect())}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        exc = None if task.cancelled() else task.exception()
        # A client gone mid-send is the normal end, not an error.
        if exc is not None and not isinstance(exc, WebSocketDisconnect | OSError | RuntimeError):
            raise exc


async def _deny(websocket: WebSocket, error: AppError) -> None:
    if websocket.client_state.name != "CONNECTING":
        await websocket.close(code=1011)
    elif "websocket.http.response" in websocket.scope.get("extensions", {}):
        response = error_response(error.status_code, error.code, error.detail, error.headers)
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=4000 + error.status_code, reason=error.detail)
