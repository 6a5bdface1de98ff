"""The EventBroker contract, run on both implementations; Redis also across instances."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from filesvc.transfers.broker import QUEUE_MESSAGES, EventBroker, InProcessBroker, RedisBroker


async def _redis_broker(url: str) -> RedisBroker:
    broker = RedisBroker(url, prefix=f"filesvc-test-{uuid.uuid4().hex}:")
    await broker.start()
    return broker


@pytest.fixture(params=["memory", "redis"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[EventBroker]:
    if request.param == "memory":
        yield InProcessBroker()
        return
    redis_broker = await _redis_broker(request.getfixturevalue("redis_url"))
    try:
        yield redis_broker
    finally:
        await redis_broker.aclose()


async def _next(messages: AsyncIterator[str]) -> str:
    return await asyncio.wait_for(anext(messages), timeout=5)


async def test_subscribers_get_messages_in_order(broker: EventBroker) -> None:
    async with (
        broker.subscribe("a") as first,
        broker.subscribe("a") as second,
        broker.subscribe("b") as other,
    ):
        for n in range(3):
            await broker.publish("a", f"m{n}")
        await broker.publish("b", "for b")
        assert [await _next(first) for _ in range(3)] == ["m0", "m1", "m2"]
        assert [await _next(second) for _ in range(3)] == ["m0", "m1", "m2"]
        assert await _next(other) == "for b"


async def test_a_channel_may_have_subscribers_while_one_is_subscribed(
    broker: EventBroker,
) -> None:
    # Publishers skip making messages for a channel nobody can hear; the in-process broker
    # knows all of its subscribers, Redis's may be in other processes.
    alone = isinstance(broker, InProcessBroker)
    assert broker.may_have_subscribers("a") is not alone
    async with broker.subscribe("a"):
        assert broker.may_have_subscribers("a")
        assert broker.may_have_subscribers("b") is not alone
        async with broker.subscribe("a"):
            assert broker.may_have_subscribers("a")
        assert broker.may_have_subscribers("a")
    assert broker.may_have_subscribers("a") is not alone


async def test_a_slow_subscriber_loses_the_oldest(broker: EventBroker) -> None:
    async with broker.subscribe("slow") as messages, broker.subscribe("slow") as witness:
        published = [str(n) for n in range(QUEUE_MESSAGES + 10)] + ["last"]
        for message in published:
            await broker.publish("slow", message)
        # Every subscriber of a process is handed each message at once: when the witness
        # has the last one (Redis delivers it a moment later), so has the slow one.
        while await _next(witness) != "last":
            pass
        received: list[str] = []
        while (waiting := messages.get_nowait()) is not None:
            received.append(waiting)
    assert received == published[-QUEUE_MESSAGES:]


async def test_keys_expire_and_put_new_claims_once(broker: EventBroker) -> None:
    assert await broker.get("k") is None
    assert await broker.put_new("k", "first", 0.3)
    assert not await broker.put_new("k", "second", 10)
    assert await broker.get("k") == "first"
    await asyncio.sleep(0.5)
    assert await broker.get("k") is None
    await broker.put("k", "third", 10)
    assert await broker.get("k") == "third"
    await broker.check()


async def test_redis_instances_see_each_other(redis_url: str) -> None:
    prefix = f"filesvc-test-{uuid.uuid4().hex}:"
    one, two = RedisBroker(redis_url, prefix), RedisBroker(redis_url, prefix)
    await one.start()
    await two.start()
    try:
        async with two.subscribe("t") as messages:
            await one.publish("t", "from one")
            await one.put("state", "shared", 10)
            assert await _next(messages) == "from one"
            assert await two.get("state") == "shared"
    finally:
        await one.aclose()
        await two.aclose()
