"""Logging set-up: plain text by default, or one JSON object a line
(FILESVC_LOG_FORMAT=json) that log search can index without parsing.

The request id of the request being served rides in a context variable, so every line
logged while serving it (ours, SQLAlchemy's, uvicorn's) carries it, not only the access
line. Messages never hold secrets: the access line has the path without its query
string, with share-link tokens replaced (middleware.py).
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

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
                "class": "logging.StreamHandler",
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
