"""Logging set-up: plain text by default, or one JSON object a line
(FILESVC_LOG_FORMAT=json) that log search can index without parsing.

The request id of the request being served rides in a context variable, so every line
logged while serving it (ours, SQLAlchemy's, uvicorn's) carries it, not only the access
line. Messages never hold secrets: the access line has the path without its query
string, with share-link tokens replaced (middleware.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

REQUEST_ID: ContextVar[str | None] = ContextVar("filesvc_request_id", default=None)
# What the access line adds to its record (middleware.py), copied into its JSON object.
ACCESS_FIELDS = (
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "bytes_received",
    "bytes_sent",
    "client",
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        for key in ACCESS_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TurnBatchedHandler(logging.StreamHandler[TextIO]):
    """A stream handler (stderr) that writes the lines logged on an event loop during one
    turn of it together, as the next turn starts: one write for the access lines of every
    request answered in that turn, not one each. Each write is a system call on the busy
    loop thread, which also lets the other threads take the GIL from it.

    Warnings and errors, lines logged off the loop (other threads, no loop running) and
    `flush()` (logging.shutdown calls it at exit) write at once, the waiting lines first.
    A line waits for at most one turn of the loop."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self._waiting: list[str] = []
        self._flush_on: asyncio.AbstractEventLoop | None = None  # where a flush is due

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            loop = _running_loop()
            if loop is None or record.levelno >= logging.WARNING:
                self._write([*self._take(), line])
                return
            if self._flush_on is not loop:
                self._write(self._take())  # due on another loop, perhaps gone
                loop.call_soon(self.flush)
                self._flush_on = loop
            self._waiting.append(line)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        self.acquire()
        try:
            self._write(self._take())
            self._flush_on = None
        finally:
            self.release()
        super().flush()

    def _take(self) -> list[str]:
        lines, self._waiting = self._waiting, []
        return lines

    def _write(self, lines: list[str]) -> None:
        if lines:
            self.stream.write("".join(lines))
            self.stream.flush()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the process; uvicorn applies it in every worker."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"filesvc": formatter},
        "handlers": {
            "stderr": {
                "()": TurnBatchedHandler,
                "formatter": "filesvc",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            # uvicorn's own config would add handlers of its own: one format, one place.
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
            "alembic": {"level": "WARNING"},
            # It warns about every malformed body: client input, already answered with a 400.
            "python_multipart": {"level": "ERROR"},
        },
    }
