"""Prometheus metrics, one set per app.

Label values are drawn from small fixed sets (route templates, status codes, backend and
operation names, upload outcomes), never from user ids, file names or raw paths, so the
number of series stays bounded whatever clients send.

With `--workers N`, `filesvc serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory
before any worker starts: each worker writes its values to files there and a scrape of
any worker adds them all up (gauges of things in progress are summed over live workers).
"""

from __future__ import annotations

import asyncio
import glob
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from fastapi.routing import iter_route_contexts
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute
from starlette.types import Scope

from filesvc.errors import AppError, BodyTimeout
from filesvc.files.errors import ChecksumMismatch, UploadIncomplete
from filesvc.storage.base import StorageError

__all__ = [
    "CONTENT_TYPE_LATEST",
    "UNMATCHED",
    "Metrics",
    "route_label",
    "route_templates",
    "upload_outcome",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Requests that matched no route share one label, so random paths cannot add series.
UNMATCHED = "unmatched"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    def __init__(self) -> None:
        # A registry per app: tests build many apps in one process. In multiprocess mode
        # the values live in files and a scrape reads those instead (see `render`).
        self.registry = CollectorRegistry(auto_describe=True)
        self.route_templates: dict[int, str] = {}  # filled once the app has its routes
        registry = self.registry
        self.requests = Counter(
            "filesvc_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "filesvc_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.bytes_received = Counter(
            "filesvc_http_received_bytes", "Request body bytes received.", registry=registry
        )
        self.bytes_sent = Counter(
            "filesvc_http_sent_bytes", "Response body bytes sent.", registry=registry
        )
        self.transfers = Gauge(
            "filesvc_transfers_active",
            "Uploads being received and downloads being sent.",
            ["direction"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.event_streams = Gauge(
            "filesvc_event_streams_active",
            "Open Server-Sent Events streams.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.storage_errors = Counter(
            "filesvc_storage_errors",
            "Storage backend failures, by backend and operation.",
            ["backend", "operation"],
            registry=registry,
        )
        self.uploads = Counter(
            "filesvc_uploads",
            "Finished uploads by outcome: created, too_large, checksum_mismatch, "
            "client_gone, body_timeout, storage_error, unsupported_type, invalid or error.",
            ["outcome"],
            registry=registry,
        )

        self.uploads_active = self.transfers.labels("upload")
        self.downloads_active = self.transfers.labels("download")
        # labels() takes a lock and builds a key each time: the request path keeps the
        # children it has used (a bounded set: methods, templates and statuses).
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in METHODS:
            method = "other"  # any token is a valid method: a client must not add series
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    async def render(self) -> bytes:
        if multiprocess_dir() is None:
            return generate_latest(self.registry)
        return await asyncio.to_thread(_collect_all_processes)


def _collect_all_processes() -> bytes:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def route_templates(routes: Sequence[BaseRoute]) -> dict[int, str]:
    """Each route's full template, by the route's id: a route of an included router only
    knows its own part (`/files/{file_id}`), not the prefixes it was included under."""
    templates = {}
    for context in iter_route_contexts(routes):
        if context.path_format is not None:  # a Mount's ends in /{path}
            templates[id(context.original_route)] = context.path_format
    return templates


def route_label(scope: Scope, templates: Mapping[int, str]) -> str:
    """The matched route's template (`/api/v1/files/{file_id}`), never the raw path."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    return templates.get(id(route), UNMATCHED)


def upload_outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "created"
    if isinstance(exc, AppError) and exc.status_code == 413:
        return "too_large"
    if isinstance(exc, ChecksumMismatch):
        return "checksum_mismatch"
    if isinstance(exc, BodyTimeout):
        return "body_timeout"
    if isinstance(exc, UploadIncomplete | ClientDisconnect | asyncio.CancelledError):
        return "client_gone"
    if isinstance(exc, StorageError):
        return "storage_error"
    if isinstance(exc, AppError) and exc.status_code == 415:
        return "unsupported_type"
    if isinstance(exc, AppError) and exc.status_code < 500:
        return "invalid"
    return "error"


def forget_dead_processes(directory: str) -> None:
    """Drop the in-progress gauges of workers that are gone (killed, crashed), so a
    replacement does not count their transfers forever. Each worker calls it at start,
    and for itself at exit."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        match = _LIVE_GAUGE_FILE.match(Path(path).name)
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
