"""Reading `text/event-stream` bodies in tests (the e2e suite uses it on live streams)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    event: str
    id: str | None
    data: Any
    retry: int | None = None


def parse_events(lines: Iterable[str]) -> Iterator[Event]:
    """Events as a browser's EventSource dispatches them, plus `retry`-only blocks."""
    event, event_id, data, retry = "message", None, list[str](), None
    for line in lines:
        if line == "":
            if data:
                yield Event(event, event_id, json.loads("\n".join(data)))
            elif retry is not None:
                yield Event("retry", None, None, retry)
            event, data, retry = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
        elif name == "retry":
            retry = int(value)


def events_of(text: str) -> list[Event]:
    return list(parse_events(text.splitlines()))
