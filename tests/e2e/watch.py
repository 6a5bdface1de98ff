"""Watching a live server's event streams from a thread, with each event's arrival time."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from tests.transfers.sse import Event, parse_events

FINAL = ("complete", "failed")


@dataclass
class Arrival:
    at: float  # time.monotonic() when the event was read
    event: Event


@dataclass
class Watcher:
    """Reads `GET url` as SSE in a thread until a final event (or `stop_after`)."""

    url: str
    token: str
    stop_after: tuple[str, ...] = FINAL
    timeout: float = 60.0
    headers: dict[str, str] = field(default_factory=dict)  # sent with the GET
    status: int = 0
    arrivals: list[Arrival] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        # The first block (`retry:`) means the stream is open and the server is subscribing.
        assert self.started.wait(10), f"{self.url} did not start streaming"
        return self

    def _run(self) -> None:
        try:
            headers = {**self.headers, "Authorization": f"Bearer {self.token}"}
            with httpx.stream("GET", self.url, headers=headers, timeout=self.timeout) as response:
                self.status = response.status_code
                if response.status_code != 200:
                    self.started.set()
                    return
                for event in parse_events(response.iter_lines()):
                    self.arrivals.append(Arrival(time.monotonic(), event))
                    self.started.set()
                    if event.event in self.stop_after:
                        return
        except BaseException as exc:
            self.error = exc
        finally:
            self.started.set()

    def join(self, timeout: float = 60.0) -> list[Event]:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"{self.url}: no final event within {timeout}s"
        assert self.error is None, self.error
        return self.events

    @property
    def events(self) -> list[Event]:
        return [a.event for a in self.arrivals if a.event.event != "retry"]
