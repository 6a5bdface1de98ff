"""The application factory. Nothing is built at import time."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import iter_route_contexts
from prometheus_client import multiprocess
from starlette.routing import BaseRoute

from filesvc import health
from filesvc.allocator import return_big_buffers_to_the_os
from filesvc.archive.router import router as archive_router
from filesvc.auth.cache import UserCache
from filesvc.auth.router import router as auth_router
from filesvc.auth.security import load_or_create_secret_key
from filesvc.config import Settings
from filesvc.db import Database
from filesvc.deps import AppContext
from filesvc.errors import install_error_handlers
from filesvc.events.feed import FileFeed
from filesvc.events.router import router as events_router
from filesvc.files.blob_cache import SmallBlobCache
from filesvc.files.hot_reads import HotReads
from filesvc.files.hot_uploads import HotUploads
from filesvc.files.inserts import file_inserts
from filesvc.files.router import router as files_router
from filesvc.middleware import RequestContextMiddleware
from filesvc.observability import router as metrics_router
from filesvc.observability.metrics import (
    Metrics,
    forget_dead_processes,
    multiprocess_dir,
    route_templates,
)
from filesvc.openapi import install_openapi
from filesvc.server.drain import Drain
from filesvc.sharing.router import SHARED_SEGMENT
from filesvc.sharing.router import router as sharing_router
from filesvc.storage.base import Storage, StorageError
from filesvc.storage.errors import install_storage_error_handlers
from filesvc.storage.factory import build_storage
from filesvc.transfers.asgi import TransferMiddleware
from filesvc.transfers.broker import build_broker
from filesvc.transfers.errors import install_transfer_error_handlers
from filesvc.transfers.router import router as transfers_router
from filesvc.transfers.service import TransferHub
from filesvc.transfers.streams import StreamLimiter
from filesvc.tus.receive import HashCache
from filesvc.tus.router import router as tus_router
from filesvc.tus.service import TusRuntime
from filesvc.tus.store import build_partial_store
from filesvc.users.router import router as users_router
from filesvc.users.service import ensure_admin
from filesvc.web.router import install_web

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
CORS_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
# What a browser upload or ranged download sends beyond the CORS-safelisted headers.
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Content-Digest",
    "X-Checksum-SHA256",
    "X-Transfer-Id",
    "X-Request-ID",
    "Range",
    "If-Range",
    "If-None-Match",
    "If-Modified-Since",
    "Last-Event-ID",
    # tus (tus-js-client, Uppy)
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Offset",
    "Upload-Metadata",
    "Upload-Defer-Length",
    "Upload-Checksum",
]
CORS_EXPOSED_HEADERS = [
    "Location",
    "ETag",
    "Content-Range",
    "Content-Disposition",
    "Content-Length",
    "Accept-Ranges",
    "Last-Modified",
    "X-Request-ID",
    "X-Transfer-Id",
    # tus: what tus-js-client and Uppy read from responses
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Metadata",
    "Upload-Defer-Length",
    "Upload-Expires",
    "X-File-Id",
    "X-File-Location",
]


# The loop's default executor runs `asyncio.to_thread` and aiofiles: file writes, fsyncs,
# stats, small reads, hashing. asyncio's default (CPU count + 4: six threads here) lets six
# fsyncs of concurrent uploads block every small read behind them; threads are only started
# when needed, and fsyncs that overlap are grouped by the file system's journal.
IO_THREADS = 32


def _use_io_threads() -> None:
    # Not shut down with the app: the loop does that when it ends (asyncio.run).
    pool = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="filesvc-io")
    asyncio.get_running_loop().set_default_executor(pool)


def _secret_key(settings: Settings) -> str:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    return load_or_create_secret_key(settings.data_dir)


async def _check_storage(storage: Storage) -> None:
    """A missing bucket or bad credentials stop the start with a message, rather than
    failing the first upload with a 503."""
    try:
        await storage.check()
    except StorageError as exc:
        logger.error("storage (%s) is not usable: %s", storage.name, exc)
        raise RuntimeError(f"filesvc cannot start: storage is not usable: {exc}") from None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    mimetypes.init()  # reads the system's type tables now, not on the first upload
    _use_io_threads()
    return_big_buffers_to_the_os()
    metrics_dir = multiprocess_dir()
    if metrics_dir is not None:
        forget_dead_processes(metrics_dir)
    drain: Drain = app.state.drain
    db = Database(settings.resolved_database_url)
    storage = build_storage(settings)
    broker = None
    try:
        await _check_storage(storage)
        admin_password = settings.admin_password
        await ensure_admin(db, admin_password.get_secret_value() if admin_password else None)
        broker = await build_broker(settings.redis_url)
        users = UserCache(db, broker)
        users.watch()
        feed = FileFeed(broker, db, settings.events_replay_window)
        app.state.context = context = AppContext(
            settings=settings,
            db=db,
            storage=storage,
            secret_key=_secret_key(settings),
            broker=broker,
            transfers=TransferHub(broker, settings),
            feed=feed,
            file_inserts=file_inserts(db, feed),
            streams=StreamLimiter(settings.max_streams_per_user),
            metrics=app.state.metrics,
            drain=drain,
            users=users,
            small_blobs=SmallBlobCache(
                settings.small_file_cache_bytes, settings.small_file_cache_max_file_bytes
            ),
        )
        drain.install()
        app.state.tus = TusRuntime(
            settings=settings,
            db=db,
            storage=storage,
            partials=build_partial_store(storage),
            hashes=HashCache(),
            transfers=context.transfers,
            feed=context.feed,
        )
        async with users.following():
            yield
    finally:
        if metrics_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), metrics_dir)  # type: ignore[no-untyped-call]
        if broker is not None:
            await broker.aclose()
        await storage.aclose()
        await db.dispose()


def _route(app: FastAPI, template: str, method: str) -> BaseRoute:
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if context.path_format == template and method in getattr(route, "methods", ()):
            return route
    raise LookupError(f"no {method} {template} route")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="filesvc",
        summary="File storage and streaming: uploads, SQL metadata, ranged downloads.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.drain = Drain(settings.shutdown_grace_seconds)
    install_error_handlers(app)
    install_storage_error_handlers(app)
    install_transfer_error_handlers(app)

    # Each straight onto the app: every level of included routers is matched again on
    # every request (FastAPI 0.165), so one level, not two.
    for router in (
        auth_router,
        users_router,
        files_router,
        sharing_router,
        archive_router,
        transfers_router,
        events_router,
        tus_router,
    ):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(health.router)
    app.include_router(metrics_router.router)
    install_web(app)
    app.state.metrics.route_templates = route_templates(app.routes)
    install_openapi(app)

    app.add_middleware(
        HotReads,
        metadata_route=_route(app, "/api/v1/files/{file_id}", "GET"),
        content_route=_route(app, "/api/v1/files/{file_id}/content", "GET"),
        shared_route=_route(app, "/api/v1/shared/{token}", "GET"),
    )
    app.add_middleware(HotUploads, route=_route(app, "/api/v1/files/raw/{name}", "PUT"))
    if settings.cors_origins:
        # Bearer tokens, not cookies: credentials stay off, so even `*` never pairs with them.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
            max_age=600,
        )
    app.add_middleware(TransferMiddleware)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=app.state.metrics,
        drain=app.state.drain,
        body_idle_timeout=settings.body_idle_timeout_seconds,
        secret_after=(SHARED_SEGMENT,),
    )
    return app
