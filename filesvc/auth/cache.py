"""Signed-in users' rows, kept for at most a second, so a request with a token does not
load its user from the database every time.

The promise stays: a disabled or deleted user, or a changed password, locks tokens out

- at once in this process: a committed change to a `users` row drops its entry in the
  session's `after_commit`, before the response that made the change is sent; a load that
  began before such a change and ends after it is not kept (the generation check);
- within milliseconds in the other workers and instances when Redis is configured: the
  change is published on the broker's `users` channel and each process drops the entry;
- within TTL_SECONDS whatever happens: a message lost while Redis reconnects, a change made
  by the `filesvc users` CLI (no broker) or in SQL. The TTL is the guarantee; the message
  only makes it sooner.

Only acceptance is cached: a token that does not match its cached user (version, disabled)
is checked against the database before it is refused, so a change made elsewhere never
refuses a good token either. Entries are copies (db.point_reads), shared between requests: read
them, never change them (load the row in your session to change a user).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, UOWTransaction

from filesvc.db import Database
from filesvc.transfers.broker import EventBroker
from filesvc.users.models import User

logger = logging.getLogger(__name__)

TTL_SECONDS = 1.0
MAX_ENTRIES = 10_000
CHANNEL = "users"
_CHANGED = "filesvc_changed_users"  # key in Session.info


class UserCache:
    def __init__(self, db: Database, broker: EventBroker, ttl_seconds: float = TTL_SECONDS) -> None:
        self._db = db
        self._broker = broker
        self._ttl = ttl_seconds
        self._entries: dict[str, tuple[User, float]] = {}
        # Bumped by every invalidation: a load that saw an older value is not stored.
        self._generation = 0
        self._publishing: set[asyncio.Task[None]] = set()
        # One load per user at a time: when an entry expires under load, the requests that
        # find it gone wait for the same read instead of each making their own.
        self._loading: dict[str, asyncio.Task[User | None]] = {}

    def get(self, user_id: str) -> User | None:
        entry = self._entries.get(user_id)
        if entry is None:
            return None
        user, expires = entry
        if time.monotonic() >= expires:
            del self._entries[user_id]
            return None
        return user

    async def load(self, user_id: str) -> User | None:
        """The user's row from the database (a short read of its own, so no request holds a
        connection for it), kept for the next requests."""
        task = self._loading.get(user_id)
        if task is None:
            task = asyncio.ensure_future(self._load(user_id))
            self._loading[user_id] = task
            task.add_done_callback(self._loaded)
        # Shielded: one caller giving up (a client gone) does not fail the others.
        return await asyncio.shield(task)

    def _loaded(self, task: asyncio.Task[User | None]) -> None:
        for user_id, loading in list(self._loading.items()):
            if loading is task:
                del self._loading[user_id]

    async def _load(self, user_id: str) -> User | None:
        generation = self._generation
        user = await self._db.point_reads.get(User, user_id)
        if user is None:
            return None
        if generation == self._generation:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[user_id] = (user, time.monotonic() + self._ttl)
        return user

    def invalidate(self, user_id: str) -> None:
        self._generation += 1
        self._entries.pop(user_id, None)
        # A request after the change must not share a read begun before it.
        self._loading.pop(user_id, None)

    def changed(self, user_ids: set[str]) -> None:
        """Committed changes to these users: forget them here, and tell the others."""
        for user_id in user_ids:
            self.invalidate(user_id)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): the other processes' TTL ends it
        for user_id in user_ids:
            task = loop.create_task(self._publish(user_id))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    async def _publish(self, user_id: str) -> None:
        try:
            await self._broker.publish(CHANNEL, user_id)
        except Exception:
            logger.warning("could not announce a change to user %s; the TTL ends it", user_id)

    @contextlib.asynccontextmanager
    async def following(self) -> AsyncIterator[None]:
        """While entered, changes announced by other processes drop their entries here."""
        async with self._broker.subscribe(CHANNEL) as subscription:

            async def follow() -> None:
                async for user_id in subscription:
                    self.invalidate(user_id)

            task = asyncio.create_task(follow(), name="filesvc-user-cache")
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await asyncio.gather(*self._publishing, return_exceptions=True)

    def watch(self) -> None:
        """Hear of every committed change to a user made through the database's sessions."""
        event.listen(self._db.session_class, "after_flush", _collect_changed_users)
        event.listen(self._db.session_class, "after_commit", self._after_commit)

    def _after_commit(self, session: Session) -> None:
        changed: set[str] | None = session.info.pop(_CHANGED, None)
        if changed:
            self.changed(changed)


def _collect_changed_users(session: Session, _: UOWTransaction) -> None:
    # After a flush the session still lists what it flushed as dirty and deleted.
    changed = {obj.id for obj in (*session.dirty, *session.deleted) if isinstance(obj, User)}
    if changed:
        info: dict[str, Any] = session.info
        info.setdefault(_CHANGED, set()).update(changed)
