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
from filesvc.auth.router import router as auth_router
from filesvc.auth.security import load_or_create_secret_key
from filesvc.config import Settings
from filesvc.db import Database
from filesvc.deps import AppContext
from filesvc.errors import install_error_handlers
from filesvc.files.router import router as files_router
from filesvc.middleware import RequestContextMiddleware
from filesvc.storage.base import Storage, StorageError
from filesvc.storage.errors import install_storage_error_handlers
from filesvc.storage.factory import build_storage
from filesvc.users.router import router as users_router
from filesvc.users.service import ensure_admin

logger = logging.getLogger(__name__)


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
    try:
        await _check_storage(storage)
        admin_password = settings.admin_password
        await ensure_admin(db, admin_password.get_secret_value() if admin_password else None)
        app.state.context = AppContext(
            settings=settings, db=db, storage=storage, secret_key=_secret_key(settings)
        )
        yield
    finally:
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

    api = APIRouter(prefix="/api/v1")
    api.include_router(auth_router)
    api.include_router(users_router)
    api.include_router(files_router)
    app.include_router(api)
    app.include_router(health.router)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Location", "ETag", "Content-Range", "X-Request-ID", "X-Transfer-Id"],
        )
    app.add_middleware(RequestContextMiddleware)
    return app
