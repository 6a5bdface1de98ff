"""Waiting, in-process, until a stream is really listening: a condition polled against a
deadline, never a fixed sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import FastAPI

from filesvc.deps import AppContext
from filesvc.transfers.broker import InProcessBroker, RedisBroker

POLL_SECONDS = 0.005
DEADLINE_SECONDS = 10.0


async def until(condition: Callable[[], bool], *, what: str) -> None:
    """Poll `condition` until it holds; fail with `what` once the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while not condition():
        assert loop.time() < deadline, f"timed out after {DEADLINE_SECONDS:.0f}s: {what}"
        await asyncio.sleep(POLL_SECONDS)


def subscribers(app: FastAPI) -> int:
    """Streams of this process subscribed to the broker now (/events and transfers alike)."""
    context: AppContext = app.state.context
    broker = context.broker
    assert isinstance(broker, InProcessBroker | RedisBroker), broker
    return broker.fanout.subscribers


async def until_subscribed(app: FastAPI, count: int) -> None:
    """Until `count` streams are subscribed: from then on, nothing published is missed."""
    await until(lambda: subscribers(app) >= count, what=f"{count} subscribed streams")
