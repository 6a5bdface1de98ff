"""Who may write to an upload now: a lease in its row, so it holds across workers and
instances without holding a database connection while the bytes move.

A PATCH claims the lease with one conditional UPDATE (free, or expired), keeps it fresh
from a background task while its body arrives, and gives it back in the same UPDATE that
commits the new offset. A process killed mid-chunk leaves a lease that simply expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import CursorResult, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from filesvc.db import Database, utcnow
from filesvc.tus.models import TusUpload

LEASE_SECONDS = 30.0
RENEW_EVERY_SECONDS = LEASE_SECONDS / 3


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


async def claim(session: AsyncSession, upload_id: str) -> str | None:
    """The lease's token, or None when another request holds it."""
    token = secrets.token_hex(16)
    now = utcnow()
    result = await session.execute(
        update(TusUpload)
        .where(
            TusUpload.id == upload_id,
            or_(TusUpload.lease_token.is_(None), TusUpload.lease_expires_at < now),
        )
        .values(lease_token=token, lease_expires_at=now + timedelta(seconds=LEASE_SECONDS))
        .execution_options(synchronize_session=False)
    )
    return token if _rowcount(result) == 1 else None


def held_by(upload_id: str, token: str) -> Any:
    return (TusUpload.id == upload_id) & (TusUpload.lease_token == token)


async def release(session: AsyncSession, upload_id: str, token: str, **values: Any) -> bool:
    """Give the lease back, setting `values` in the same UPDATE; False if it was lost."""
    result = await session.execute(
        update(TusUpload)
        .where(held_by(upload_id, token))
        .values(lease_token=None, lease_expires_at=None, **values)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


class Lease:
    def __init__(self, upload_id: str, token: str) -> None:
        self.upload_id = upload_id
        self.token = token
        self.lost = False


async def _renew(db: Database, lease: Lease) -> None:
    while True:
        await asyncio.sleep(RENEW_EVERY_SECONDS)
        try:
            async with db.session() as session:
                result = await session.execute(
                    update(TusUpload)
                    .where(held_by(lease.upload_id, lease.token))
                    .values(lease_expires_at=utcnow() + timedelta(seconds=LEASE_SECONDS))
                    .execution_options(synchronize_session=False)
                )
                if _rowcount(result) != 1:
                    lease.lost = True
                    return
        except Exception:  # noqa: S112 - a blip: the next round tries again before expiry
            continue


@asynccontextmanager
async def kept_fresh(db: Database, lease: Lease) -> AsyncIterator[Lease]:
    task = asyncio.create_task(_renew(db, lease))
    try:
        yield lease
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
