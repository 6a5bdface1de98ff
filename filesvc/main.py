"""The application factory. Nothing is built at import time."""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from filesvc import health
from filesvc.allocator import return_big_buffers_to_the_os
from filesvc.archive.router import router as archive_router
from filesvc.auth.router import router as auth_router
from filesvc.auth.security import load_or_create_secret_key
from filesvc.config import Settings
from filesvc.db import Database
from filesvc.deps import AppContext
from filesvc.errors import install_error_handlers
from filesvc.events.feed import FileFeed
from filesvc.events.router import router as events_router
from filesvc.files.router import router as files_router
from filesvc.middleware import RequestContextMiddleware
from filesvc.openapi import install_openapi
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
from filesvc.users.router import router as users_router
from filesvc.users.service import ensure_admin
from filesvc.web.router import install_web

logger = logging.getLogger(__name__)

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
]


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
    return_big_buffers_to_the_os()
    db = Database(settings.resolved_database_url)
    storage = build_storage(settings)
    broker = None
    try:
        await _check_storage(storage)
        admin_password = settings.admin_password
        await ensure_admin(db, admin_password.get_secret_value() if admin_password else None)
        broker = await build_broker(settings.redis_url)
        app.state.context = AppContext(
            settings=settings,
            db=db,
            storage=storage,
            secret_key=_secret_key(settings),
            broker=broker,
            transfers=TransferHub(broker, settings),
            feed=FileFeed(broker, db, settings.events_replay_window),
            streams=StreamLimiter(settings.max_streams_per_user),
        )
        yield
    finally:
        if broker is not None:
            await broker.aclose()
        await storage.aclose()
        await db.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="filesvc",
        summary="File storage and streaming: uploads, SQL metadata, ranged downloads.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    install_storage_error_handlers(app)
    install_transfer_error_handlers(app)

    api = APIRouter(prefix="/api/v1")
    api.include_router(auth_router)
    api.include_router(users_router)
    api.include_router(files_router)
    api.include_router(sharing_router)
    api.include_router(archive_router)
    api.include_router(transfers_router)
    api.include_router(events_router)
    app.include_router(api)
    app.include_router(health.router)
    install_web(app)
    install_openapi(app)

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
    app.add_middleware(RequestContextMiddleware, secret_after=(SHARED_SEGMENT,))
    return app
