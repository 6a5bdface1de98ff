"""How storage failures reach clients: as JSON errors, logged without secrets."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from filesvc.errors import error_response, error_responses
from filesvc.storage.base import ObjectNotFound, StorageError

logger = logging.getLogger(__name__)
# A store that is down is usually back within seconds (a restart, a failover).
RETRY_AFTER_SECONDS = 5
# For the routes that read or write blobs.
STORAGE_ERRORS = error_responses(503)


# The operation a failing request was doing, for the storage error counter.
_OPERATIONS = {"GET": "read", "HEAD": "read", "POST": "write", "PUT": "write", "DELETE": "delete"}


def count_storage_error(request: Request, operation: str | None = None) -> None:
    context = getattr(request.app.state, "context", None)
    if context is not None:
        operation = operation or _OPERATIONS.get(request.method, "other")
        context.metrics.storage_errors.labels(context.storage.name, operation).inc()


async def _storage_error(request: Request, exc: Exception) -> JSONResponse:
    count_storage_error(request)
    if isinstance(exc, ObjectNotFound):
        # A row whose blob is gone: a server-side fault, not the client's.
        logger.error("blob missing for a committed file: %s", exc)
        return error_response(500, "blob_missing", "The file's bytes are missing from storage.")
    logger.error("storage error: %s", exc)
    return error_response(
        503,
        "storage_unavailable",
        "Storage is unavailable; try again later.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def install_storage_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StorageError, _storage_error)
