from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from filesvc.deps import ContextDep
from filesvc.errors import error_responses
from filesvc.storage.base import StorageError
from filesvc.storage.errors import count_storage_error
from filesvc.transfers.broker import BrokerUnavailable

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses=error_responses(503))
async def readyz(request: Request, context: ContextDep) -> JSONResponse:
    if context.drain.draining:
        # Stopping: finishing what is in flight, taking nothing new. Checked first, so a
        # load balancer hears it at once, whatever the backends say.
        return JSONResponse(
            {
                "detail": "Not ready: shutting down.",
                "code": "shutting_down",
                "failed": ["shutting_down"],
            },
            status_code=503,
        )
    failed: list[str] = []
    try:
        async with context.db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:
        logger.warning("readiness: database check failed", exc_info=True)
        failed.append("database")
    try:
        await context.storage.check()
    except StorageError:
        logger.warning("readiness: storage check failed", exc_info=True)
        count_storage_error(request, "check")
        failed.append("storage")
    if context.settings.redis_url:
        try:
            await context.broker.check()
        except BrokerUnavailable:
            logger.warning("readiness: Redis check failed", exc_info=True)
            failed.append("redis")
    if failed:
        return JSONResponse(
            {
                "detail": f"Not ready: {', '.join(failed)} failed.",
                "code": "not_ready",
                "failed": failed,
            },
            status_code=503,
        )
    return JSONResponse({"status": "ready"})
