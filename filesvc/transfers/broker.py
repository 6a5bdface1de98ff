"""Event brokers: channels fanned out to subscribers, beside a small store with expiry.

One protocol, two real implementations. `InProcessBroker` serves one process (the
default); `RedisBroker` (FILESVC_REDIS_URL) makes every worker and instance one system.
Either way each process fans messages out to its own subscribers through bounded queues,
so a thousand watchers of one transfer cost Redis one message, not a thousand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# Messages a subscriber may fall behind by before the oldest are dropped. Progress is
# lossy by nature; the final event comes last, so it is never the one dropped.
QUEUE_MESSAGES = 64
REDIS_PREFIX = "filesvc:"
RECONNECT_DELAY_SECONDS = 1.0


class BrokerUnavailable(Exception):
    """The broker's backing service did not answer."""


class Subscription:
    """The messages of one channel, in order, as an async iterator."""

    def __init__(self, queue: asyncio.Queue[str]) -> None:
        self._queue = queue

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> str:
        return await self._queue.get()

    async def get(self, within: float) -> str | None:
        """The next message, or None if none comes within `within` seconds."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        try:
            async with asyncio.timeout(within):
                return await self._queue.get()
        except TimeoutError:
            return None

    def get_nowait(self) -> str | None:
        """The next message if one is already waiting."""
        return None if self._queue.empty() else self._queue.get_nowait()


class EventBroker(Protocol):
    async def publish(self, channel: str, message: str) -> None: ...

    def may_have_subscribers(self, channel: str) -> bool:
        """False only when a message published on `channel` now would reach no one, so a
        publisher may skip making it."""
        ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        """Messages published on `channel` from the moment this is entered."""
        ...

    async def put(self, key: str, value: str, ttl_seconds: float) -> None: ...

    async def put_new(self, key: str, value: str, ttl_seconds: float) -> bool:
        """Store `value` only if `key` holds nothing; True if it was stored."""
        ...

    async def get(self, key: str) -> str | None: ...

    async def check(self) -> None:
        """Raise BrokerUnavailable if the backing service does not answer."""
        ...

    async def aclose(self) -> None: ...


class LocalFanout:
    """This process's subscribers, by channel."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[str]]] = {}

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_MESSAGES)
        self._queues.setdefault(channel, set()).add(queue)
        try:
            yield Subscription(queue)
        finally:
            queues = self._queues.get(channel)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._queues[channel]

    def deliver(self, channel: str, message: str) -> None:
        for queue in self._queues.get(channel, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(message)

    @property
    def subscribers(self) -> int:
        return sum(len(queues) for queues in self._queues.values())

    def has_subscribers(self, channel: str) -> bool:
        return channel in self._queues  # a channel's entry goes with its last subscriber


class InProcessBroker:
    """Everything in this process's memory: right for one worker, and for tests."""

    SWEEP_SECONDS = 60.0

    def __init__(self) -> None:
        self.fanout = LocalFanout()
        self._store: dict[str, tuple[str, float]] = {}
        self._next_sweep = time.monotonic() + self.SWEEP_SECONDS

    async def publish(self, channel: str, message: str) -> None:
        self.fanout.deliver(channel, message)

    def may_have_subscribers(self, channel: str) -> bool:
        return self.fanout.has_subscribers(channel)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        return self.fanout.subscribe(channel)

    async def put(self, key: str, value: str, ttl_seconds: float) -> None:
        now = time.monotonic()
        self._store[key] = (value, now + ttl_seconds)
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_SECONDS
            self._store = {k: v for k, v in self._store.items() if v[1] > now}

    async def put_new(self, key: str, value: str, ttl_seconds: float) -> bool:
        if await self.get(key) is not None:
            return False
        await self.put(key, value, ttl_seconds)
        return True

    async def get(self, key: str) -> str | None:
        entry = self._store.get(key)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class RedisBroker:
    """Redis pub/sub and keys with expiry, shared by every worker and instance.

    One pattern subscription per process carries every channel; a reader task hands each
    message to this process's subscribers.
    """

    def __init__(self, url: str, prefix: str = REDIS_PREFIX) -> None:
        self.fanout = LocalFanout()
        self._prefix = prefix
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=True)
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe, and wait until Redis confirms it, before any request is served."""
        try:
            self._pubsub = self._redis.pubsub()
            await self._pubsub.psubscribe(self._prefix + "channel:*")
            while True:
                message = await self._pubsub.get_message(timeout=5.0)
                if message is None:
                    raise BrokerUnavailable("Redis did not confirm the subscription")
                if message["type"] == "psubscribe":
                    break
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"Redis is not reachable: {type(exc).__name__}") from exc
        self._reader = asyncio.create_task(self._read(), name="filesvc-redis-reader")

    async def _read(self) -> None:
        channel_prefix = self._prefix + "channel:"
        while True:
            try:
                async for message in self._pubsub.listen():
                    if message["type"] == "pmessage":
                        channel = message["channel"].removeprefix(channel_prefix)
                        self.fanout.deliver(channel, message["data"])
            except (RedisError, OSError):
                # redis-py subscribes again when it reconnects; what was published
                # meanwhile is lost, as on any pub/sub.
                logger.warning("lost the Redis subscription; reconnecting", exc_info=True)
                await asyncio.sleep(RECONNECT_DELAY_SECONDS)

    async def publish(self, channel: str, message: str) -> None:
        await self._redis.publish(self._prefix + "channel:" + channel, message)

    def may_have_subscribers(self, channel: str) -> bool:
        return True  # other processes' subscribers are not known here

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        return self.fanout.subscribe(channel)

    async def put(self, key: str, value: str, ttl_seconds: float) -> None:
        await self._redis.set(self._prefix + "key:" + key, value, px=int(ttl_seconds * 1000))

    async def put_new(self, key: str, value: str, ttl_seconds: float) -> bool:
        stored = await self._redis.set(
            self._prefix + "key:" + key, value, px=int(ttl_seconds * 1000), nx=True
        )
        return bool(stored)

    async def get(self, key: str) -> str | None:
        value = await self._redis.get(self._prefix + "key:" + key)
        return value if value is None or isinstance(value, str) else value.decode()

    async def check(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"Redis is not reachable: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
        await self._redis.aclose()


async def build_broker(redis_url: str | None) -> EventBroker:
    if redis_url is None:
        return InProcessBroker()
    broker = RedisBroker(redis_url)
    try:
        await broker.start()
    except BaseException:
        await broker.aclose()
        raise
    return broker
