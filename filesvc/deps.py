"""Shared dependencies and their Annotated aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from filesvc.auth.cache import UserCache
from filesvc.config import Settings
from filesvc.db import Database
from filesvc.events.feed import FileFeed
from filesvc.files.blob_cache import SmallBlobCache
from filesvc.files.inserts import FileInserts
from filesvc.observability.metrics import Metrics
from filesvc.server.drain import Drain
from filesvc.storage.base import Storage
from filesvc.transfers.broker import EventBroker
from filesvc.transfers.service import TransferHub
from filesvc.transfers.streams import StreamLimiter


@dataclass(frozen=True, slots=True)
class AppContext:
    """What the lifespan builds once and every request shares."""

    settings: Settings
    db: Database
    storage: Storage
    secret_key: str
    broker: EventBroker
    transfers: TransferHub
    feed: FileFeed
    file_inserts: FileInserts
    streams: StreamLimiter
    metrics: Metrics
    drain: Drain
    users: UserCache
    small_blobs: SmallBlobCache


# Dependencies are `async def` even when they do not await: FastAPI runs a plain `def`
# dependency in a worker thread, a thread hop per dependency per request.
async def get_context(request: Request) -> AppContext:
    return cast(AppContext, request.app.state.context)


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_settings(context: ContextDep) -> Settings:
    return context.settings


async def get_storage(context: ContextDep) -> Storage:
    return context.storage


async def get_transfers(context: ContextDep) -> TransferHub:
    return context.transfers


async def get_feed(context: ContextDep) -> FileFeed:
    return context.feed


async def get_file_inserts(context: ContextDep) -> FileInserts:
    return context.file_inserts


async def get_session(context: ContextDep) -> AsyncIterator[AsyncSession]:
    async with context.db.session() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
TransfersDep = Annotated[TransferHub, Depends(get_transfers)]
FeedDep = Annotated[FileFeed, Depends(get_feed)]
FileInsertsDep = Annotated[FileInserts, Depends(get_file_inserts)]
# scope="function": the session commits and closes before the response is sent, so a
# commit failure still becomes an error reply and no connection is held while a
# download or stream runs.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
