"""File events: recorded in the same transaction as the change, published once committed.

The table holds the replay window (the events of the newest `events_replay_window` ids,
all a replay reads) and at most TRIM_BATCH older ones, deleted in one statement once that
many have left the window rather than one by one in every transaction; the broker
carries the live events to every instance. A live event goes out after its commit, so a
reader never sees a change it could not then load.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Delete, ScalarSelect, Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from filesvc.db import Database, utcnow
from filesvc.events.models import FileEvent
from filesvc.files.access import can_read
from filesvc.files.models import File, Visibility
from filesvc.files.schemas import FileRead
from filesvc.row_inserts import insert_rows_returning_ids
from filesvc.transfers.broker import EventBroker, Subscription
from filesvc.transfers.streams import StreamEvent, Watch
from filesvc.users.models import User

logger = logging.getLogger(__name__)

CHANNEL = "files"
REPLAY_BATCH = 500
TRIM_BATCH = 256
CREATED, UPDATED, DELETED = "file.created", "file.updated", "file.deleted"
_EVENTS = cast(Table, FileEvent.__table__)
EVENT_COLUMNS = ("kind", "file_id", "owner_id", "visibility", "data", "created_at")


@dataclass(slots=True)
class NewEvent:
    """An event being written, as its row: not an ORM object, which took 15-19 us to make
    (instrumented attributes), once per upload, on the event loop."""

    kind: str
    file_id: str
    owner_id: str
    visibility: str
    data: dict[str, Any]
    created_at: datetime
    id: int = 0  # the database's, once inserted


def event_row(event: NewEvent) -> dict[str, Any]:
    """The columns an INSERT of `event` writes (its id is the database's)."""
    return {column: getattr(event, column) for column in EVENT_COLUMNS}


@dataclass(frozen=True, slots=True)
class FileEventMessage:
    id: int
    kind: str
    owner_id: str
    visibility: str
    data_json: str

    @classmethod
    def of(cls, event: NewEvent | FileEvent) -> FileEventMessage:
        data = json.dumps(event.data, separators=(",", ":"))
        return cls(event.id, event.kind, event.owner_id, event.visibility, data)

    def encode(self) -> str:
        return json.dumps([self.id, self.kind, self.owner_id, self.visibility, self.data_json])

    @classmethod
    def decode(cls, message: str) -> FileEventMessage:
        event_id, kind, owner_id, visibility, data_json = json.loads(message)
        return cls(event_id, kind, owner_id, visibility, data_json)

    def stream_event(self) -> StreamEvent:
        return _frame(self.id, self.kind, self.data_json)

    def readable_by(self, user: User) -> bool:
        # The file as it was, enough for the one rule in files/access.py.
        return can_read(user, File(owner_id=self.owner_id, visibility=Visibility(self.visibility)))


class FileFeed:
    def __init__(self, broker: EventBroker, db: Database, window: int) -> None:
        self._broker = broker
        self._db = db
        self._window = window
        # Events up to this id are deleted, as far as this process knows.
        self._trimmed_through = 0

    async def record(
        self, session: AsyncSession, kind: str, files: Iterable[File]
    ) -> list[NewEvent]:
        """Flush the session (the files' changes, ids and time stamps), then `insert`."""
        await session.flush()
        return await session.run_sync(lambda sync: self.insert(sync.connection(), kind, files))

    def insert(self, connection: Connection, kind: str, files: Iterable[File]) -> list[NewEvent]:
        """Insert one event per file, in order, each with its id, in one statement, and
        trim the window; the files' rows must be written already. The caller commits,
        then publishes."""
        events = self.new_events(kind, files)
        if not events:
            return events
        rows = [event_row(event) for event in events]
        ids = insert_rows_returning_ids(connection, _EVENTS, rows)
        for event, event_id in zip(events, ids, strict=True):
            event.id = event_id
        through = self.trim_due(events[-1].id)
        if through is not None:
            connection.execute(self.trim_statement(through))
            # If this transaction rolls back, the next trim takes these rows with its own.
            self.trimmed(through)
        return events

    def new_events(self, kind: str, files: Iterable[File]) -> list[NewEvent]:
        """One event per file, in order, without ids yet (`insert` gives them theirs)."""
        now = utcnow()
        return [
            NewEvent(kind, file.id, file.owner_id, file.visibility.value, _data(kind, file), now)
            for file in files
        ]

    def trim_due(self, newest_id: int) -> int | None:
        """The id through which to delete events once `newest_id` is written, if a trim is
        due (TRIM_BATCH of them have left the window since the last one)."""
        outside = newest_id - self._window  # the newest id outside the window
        return outside if outside - self._trimmed_through >= TRIM_BATCH else None

    def trim_statement(self, through: int) -> Delete:
        return delete(_EVENTS).where(_EVENTS.c.id <= through)

    def trimmed(self, through: int) -> None:
        self._trimmed_through = max(self._trimmed_through, through)

    async def publish(self, events: Iterable[NewEvent]) -> None:
        if not self._broker.may_have_subscribers(CHANNEL):
            return  # nobody watches (one worker, no stream open): no message to make
        try:
            for event in events:
                await self._broker.publish(CHANNEL, FileEventMessage.of(event).encode())
        except Exception:
            # Committed already; a reconnecting client replays it from the table.
            logger.warning("could not publish a file event", exc_info=True)

    async def replay(self, after_id: int) -> list[FileEventMessage]:
        """Up to REPLAY_BATCH events after `after_id`, in a short session of their own."""
        async with self._db.session() as session:
            rows = await session.scalars(
                select(FileEvent)
                .where(FileEvent.id > after_id, FileEvent.id > _newest_id() - self._window)
                .order_by(FileEvent.id)
                .limit(REPLAY_BATCH)
            )
            return [FileEventMessage.of(row) for row in rows]

    @asynccontextmanager
    async def watch(self, user: User, last_event_id: int | None) -> AsyncIterator[Watch]:
        async with self._broker.subscribe(CHANNEL) as subscription:
            yield FileWatch(self, subscription, user, last_event_id)


class FileWatch:
    """What `user` may see: missed events after `last_event_id` (if given), then live.

    Subscribed before the replay is read, so an event committed meanwhile is in one or
    the other; one in both is sent once. No database session is held between batches.
    """

    done = False

    def __init__(
        self, feed: FileFeed, subscription: Subscription, user: User, last_event_id: int | None
    ) -> None:
        self._feed = feed
        self._subscription = subscription
        self._user = user
        self._replaying = last_event_id is not None
        self._replayed = last_event_id or 0
        self._backlog: list[FileEventMessage] = []

    async def next(self, within: float) -> StreamEvent | None:
        while self._replaying or self._backlog:
            if not self._backlog:
                self._backlog = await self._feed.replay(self._replayed)
                self._replaying = len(self._backlog) == REPLAY_BATCH
                self._backlog.reverse()
            while self._backlog:
                event = self._backlog.pop()
                self._replayed = event.id
                if event.readable_by(self._user):
                    return event.stream_event()
        message = await self._subscription.get(within)
        while message is not None:
            event = FileEventMessage.decode(message)
            if event.id > self._replayed and event.readable_by(self._user):
                return event.stream_event()
            message = self._subscription.get_nowait()
        return None


@functools.lru_cache(maxsize=256)
def _frame(event_id: int, kind: str, data_json: str) -> StreamEvent:
    return StreamEvent.of(str(event_id), kind, data_json, final=False)


def _newest_id() -> ScalarSelect[int]:
    return select(func.max(_EVENTS.c.id)).scalar_subquery()


def _data(kind: str, file: File) -> dict[str, Any]:
    if kind == DELETED:
        return {"id": file.id}
    return FileRead.of(file).model_dump(mode="json")
