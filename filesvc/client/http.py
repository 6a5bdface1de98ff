"""One httpx client per command, and the transport errors it may raise turned into
messages."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version

import httpx

from filesvc.client.config import Target
from filesvc.client.errors import error_from_transport

API = "/api/v1"
# A chunk of 64 MiB may take the server a while to hash, write and sync before it answers.
TIMEOUT = httpx.Timeout(120.0, connect=10.0)


def _user_agent() -> str:
    try:
        return f"filesvc-cli/{version('filesvc')}"
    except PackageNotFoundError:
        return "filesvc-cli"


def open_client(target: Target) -> httpx.Client:
    headers = {"User-Agent": _user_agent()}
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    # No redirects: a bearer token must not follow one to another host.
    return httpx.Client(
        base_url=target.server + API, headers=headers, timeout=TIMEOUT, follow_redirects=False
    )


@contextlib.contextmanager
def network_errors(server: str) -> Iterator[None]:
    """Connection refused, resets and timeouts become one ClientError naming the server."""
    try:
        yield
    except httpx.TransportError as exc:
        raise error_from_transport(exc, server) from exc


class RateLimit:
    """Keeps the average rate at or below `rate` bytes a second (curl's --limit-rate)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.started = time.monotonic()
        self.moved = 0

    def take(self, amount: int) -> None:
        self.moved += amount
        ahead = self.moved / self.rate - (time.monotonic() - self.started)
        if ahead > 0:
            time.sleep(ahead)
