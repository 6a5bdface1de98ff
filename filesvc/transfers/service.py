"""Transfers: who owns one, its progress as it happens, and its events for watchers.

A transfer's state lives in the broker's store (memory, or Redis with an expiry) so any
instance can check who may watch it; every change is also published on its channel.
Watchers subscribe first and read the state second, so nothing falls between the two.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi.exceptions import RequestValidationError
from starlette.requests import ClientDisconnect

from filesvc.config import Settings
from filesvc.errors import AppError
from filesvc.storage.base import ObjectNotFound, StorageError
from filesvc.transfers.broker import EventBroker, Subscription
from filesvc.transfers.errors import TransferIdTaken, TransferNotFound
from filesvc.transfers.schemas import Direction
from filesvc.transfers.streams import StreamEvent, Watch
from filesvc.users.models import Role, User

logger = logging.getLogger(__name__)

PENDING = "pending"
FINAL_EVENTS = ("complete", "failed")


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """One event as sent: its id (a per-transfer sequence), name and JSON data."""

    seq: int
    event: str
    data_json: str

    @property
    def final(self) -> bool:
        return self.event in FINAL_EVENTS

    def encode(self) -> str:
        return f"{self.seq}\n{self.event}\n{self.data_json}"

    @classmethod
    def decode(cls, message: str) -> TransferEvent:
        seq, event, data_json = message.split("\n", 2)
        return cls(int(seq), event, data_json)


@functools.lru_cache(maxsize=256)
def stream_event(message: str) -> tuple[int, StreamEvent]:
    """A published message as its sequence number and frame, made once for all watchers."""
    event = TransferEvent.decode(message)
    frame = StreamEvent.of(str(event.seq), event.event, event.data_json, final=event.final)
    return event.seq, frame


@dataclass(frozen=True, slots=True)
class TransferRecord:
    id: str
    owner_id: str | None
    last: TransferEvent

    @property
    def state(self) -> str:
        state: str = json.loads(self.last.data_json)["state"]
        return state

    def encode(self) -> str:
        return f"{self.owner_id or ''}\n{self.last.encode()}"

    @classmethod
    def decode(cls, transfer_id: str, value: str) -> TransferRecord:
        owner_id, event = value.split("\n", 1)
        return cls(transfer_id, owner_id or None, TransferEvent.decode(event))


class ClientGone(Exception):
    """A response stopped before its last byte: the client went away."""


def may_watch(user: User, record: TransferRecord) -> bool:
    return user.role is Role.admin or (record.owner_id is not None and record.owner_id == user.id)


def failure_of(exc: BaseException, direction: Direction) -> tuple[str, str]:
    """The `code` and `detail` of the failed event: those of the HTTP error, if any."""
    if isinstance(exc, AppError):
        return exc.code, exc.detail
    if isinstance(exc, RequestValidationError):
        return "validation_error", "The request's parameters are invalid."
    if isinstance(exc, ObjectNotFound):
        return "blob_missing", "The file's bytes are missing from storage."
    if isinstance(exc, StorageError):
        return "storage_unavailable", "Storage is unavailable; try again later."
    if isinstance(exc, ClientDisconnect | ClientGone | asyncio.CancelledError | OSError):
        return f"{direction}_incomplete", "The client went away before the transfer finished."
    return AppError.code, AppError.detail


def _key(transfer_id: str) -> str:
    return f"transfer:{transfer_id}"


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


class TransferHub:
    def __init__(self, broker: EventBroker, settings: Settings) -> None:
        self.broker = broker
        self.interval = settings.progress_interval_seconds
        self._active_ttl = settings.transfer_pending_seconds
        self._final_ttl = settings.transfer_retention_seconds
        self._warned = False

    async def load(self, transfer_id: str) -> TransferRecord | None:
        value = await self.broker.get(_key(transfer_id))
        return None if value is None else TransferRecord.decode(transfer_id, value)

    def _pending(self, transfer_id: str, owner_id: str | None) -> TransferRecord:
        data = {"transfer_id": transfer_id, "direction": None, "state": PENDING, "bytes": 0}
        return TransferRecord(transfer_id, owner_id, TransferEvent(1, "progress", _dumps(data)))

    async def _claim(self, transfer_id: str, owner_id: str | None) -> TransferRecord | None:
        """Reserve the id for `owner_id`; the record already there if it was taken."""
        pending = self._pending(transfer_id, owner_id)
        if await self.broker.put_new(_key(transfer_id), pending.encode(), self._active_ttl):
            return None
        return await self.load(transfer_id)

    async def reserve(self, owner: User) -> str:
        transfer_id = secrets.token_urlsafe(16)
        await self._claim(transfer_id, owner.id)
        return transfer_id

    async def watchable(self, transfer_id: str, user: User) -> TransferRecord:
        """The transfer `user` may watch; an id nobody holds yet is reserved for them, so
        a page may start watching before it starts the upload."""
        record = await self._claim(transfer_id, user.id)
        if record is None:
            return self._pending(transfer_id, user.id)
        if not may_watch(user, record):
            raise TransferNotFound()
        return record

    async def begin(
        self, transfer_id: str, owner: User | None, direction: Direction, total: int | None
    ) -> Transfer:
        owner_id = owner.id if owner else None
        seq = 1
        record = await self._claim(transfer_id, owner_id)
        if record is not None:
            if record.owner_id != owner_id or record.state != PENDING:
                raise TransferIdTaken()
            seq = record.last.seq
        transfer = Transfer(self, transfer_id, owner_id, direction, total, seq)
        if direction == "upload":
            await transfer.advance(0)  # a download starts moving once its length is known
        return transfer

    async def resume(
        self, transfer_id: str, owner_id: str, direction: Direction, total: int | None, done: int
    ) -> Transfer:
        """A transfer that spans requests (a tus upload's PATCHes), carried on from its
        last event with `done` bytes already moved."""
        seq = 1
        record = await self.load(transfer_id) or await self._claim(transfer_id, owner_id)
        if record is not None:
            if record.owner_id != owner_id or record.last.final:
                raise TransferIdTaken()
            seq = record.last.seq
        transfer = Transfer(self, transfer_id, owner_id, direction, total, seq)
        transfer.bytes = transfer.base = done
        await transfer.advance(0)
        return transfer

    async def emit(self, record: TransferRecord) -> None:
        """Store and publish a transfer's newest event. A broker failure is logged, never
        raised: the transfer itself must not fail because nobody could watch it."""
        ttl = self._final_ttl if record.last.final else self._active_ttl
        try:
            await self.broker.put(_key(record.id), record.encode(), ttl)
            await self.broker.publish(_key(record.id), record.last.encode())
        except Exception:
            if not self._warned:
                self._warned = True
                logger.warning("could not publish transfer progress", exc_info=True)

    @asynccontextmanager
    async def watch(self, transfer_id: str, last_event_id: int | None) -> AsyncIterator[Watch]:
        # Subscribed before the state is read: nothing can fall between the two.
        async with self.broker.subscribe(_key(transfer_id)) as subscription:
            record = await self.load(transfer_id)
            yield TransferWatch(subscription, record, last_event_id or 0)


class TransferWatch:
    """The current state (unless seen already), then each newer event up to the final one.

    A watcher that falls behind skips to the newest progress: progress is a level, not a
    log, and the final event always comes last, so it is never skipped.
    """

    def __init__(
        self, subscription: Subscription, record: TransferRecord | None, seen: int
    ) -> None:
        self._subscription = subscription
        self._seen = seen
        self._current: tuple[int, StreamEvent] | None = None
        self.done = False
        if record is not None:
            if record.last.seq > seen:
                self._current = stream_event(record.last.encode())
            elif record.last.final:
                self.done = True

    async def next(self, within: float) -> StreamEvent | None:
        if self._current is not None:
            (self._seen, event), self._current = self._current, None
            self.done = event.final
            return event
        message = await self._subscription.get(within)
        while message is not None:
            seq, event = stream_event(message)
            if seq <= self._seen:
                message = self._subscription.get_nowait()
                continue
            # Behind? Skip to the newest progress, but never past the final event.
            while not event.final and (newer := self._subscription.get_nowait()) is not None:
                newer_seq, newer_event = stream_event(newer)
                if newer_event.final:
                    self._current = (newer_seq, newer_event)
                    break
                seq, event = newer_seq, newer_event
            self._seen = seq
            self.done = event.final
            return event
        return None


class Tracker(Protocol):
    """What the upload and download paths report to; `UNTRACKED` when nobody asked."""

    @property
    def id(self) -> str | None: ...

    async def advance(self, count: int) -> None: ...

    async def complete(self, **extra: Any) -> None: ...

    async def fail_with(self, exc: BaseException) -> None: ...


class Untracked:
    id = None

    async def advance(self, count: int) -> None:
        return None

    async def complete(self, **extra: Any) -> None:
        return None

    async def fail_with(self, exc: BaseException) -> None:
        return None


UNTRACKED = Untracked()


class Transfer:
    """Counts bytes as they move and publishes progress at most once per interval.

    `advance` costs a clock read per chunk; only when the interval has passed does it
    publish. The last progress (every byte) always goes out before the final event.
    """

    def __init__(
        self,
        hub: TransferHub,
        transfer_id: str,
        owner_id: str | None,
        direction: Direction,
        total: int | None,
        seq: int,
    ) -> None:
        self.id = transfer_id
        self.owner_id = owner_id
        self.direction: Direction = direction
        self.total = total
        self.bytes = 0
        self.base = 0  # bytes moved by earlier requests of the same transfer (tus)
        self.finished = False
        self._hub = hub
        self._seq = seq
        self._started = time.monotonic()
        self._next_publish = 0.0
        self._published_bytes = -1

    @property
    def moving_state(self) -> str:
        return "receiving" if self.direction == "upload" else "sending"

    async def advance(self, count: int) -> None:
        self.bytes += count
        now = time.monotonic()
        if now >= self._next_publish:
            self._next_publish = now + self._hub.interval
            await self._progress(now)

    async def _progress(self, now: float) -> None:
        self._published_bytes = self.bytes
        elapsed = max(now - self._started, 1e-6)
        rate = (self.bytes - self.base) / elapsed
        total = self.total
        data: dict[str, Any] = {
            "transfer_id": self.id,
            "direction": self.direction,
            "state": self.moving_state,
            "bytes": self.bytes,
            "total": total,
            "percent": round(100 * self.bytes / total, 1) if total else None,
            "rate": round(rate, 1),
            "eta": round(max(total - self.bytes, 0) / rate, 2) if total and rate > 0 else None,
        }
        await self._emit("progress", data)

    async def _emit(self, event: str, data: dict[str, Any]) -> None:
        # When it happened, by the server's clock: lets a client judge how fresh it is.
        data["time"] = round(time.time(), 3)
        self._seq += 1
        record = TransferRecord(
            self.id, self.owner_id, TransferEvent(self._seq, event, _dumps(data))
        )
        await self._hub.emit(record)

    async def _finish(self, event: str, extra: dict[str, Any]) -> None:
        if self.finished:
            return
        self.finished = True
        if self._published_bytes != self.bytes:
            await self._progress(time.monotonic())
        data = {
            "transfer_id": self.id,
            "direction": self.direction,
            "state": event,
            "bytes": self.bytes,
            "total": self.total,
            **extra,
        }
        await self._emit(event, data)

    async def complete(self, **extra: Any) -> None:
        await self._finish("complete", extra)

    async def fail_with(self, exc: BaseException) -> None:
        code, detail = failure_of(exc, self.direction)
        # Shielded: a cancelled request still tells its watchers how it ended.
        await asyncio.shield(self._finish("failed", {"detail": detail, "code": code}))
