"""Expired tus uploads: their bytes and rows removed (called by `filesvc gc`).

An upload expires when no chunk arrived for FILESVC_TUS_EXPIRATION_SECONDS; from then on
its routes answer 410, and this removes it. An upload whose lease is held (a PATCH is
writing right now) is left for the next run.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from filesvc.db import Database, utcnow
from filesvc.storage.base import Storage, StorageError
from filesvc.tus import lease as leases
from filesvc.tus.models import TusUpload
from filesvc.tus.store import build_partial_store

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExpiredUpload:
    id: str
    owner_id: str
    offset: int
    expires_at: datetime


async def expired_uploads(db: Database, *, grace: timedelta = timedelta(0)) -> list[ExpiredUpload]:
    """Uploads that expired more than `grace` ago (what a dry run would remove)."""
    cutoff = utcnow() - grace
    async with db.session() as session:
        rows = await session.scalars(select(TusUpload).where(TusUpload.expires_at < cutoff))
        return [ExpiredUpload(u.id, u.owner_id, u.offset, u.expires_at) for u in rows]


async def remove_expired_uploads(
    db: Database, storage: Storage, *, grace: timedelta = timedelta(0), dry_run: bool = False
) -> list[ExpiredUpload]:
    """Remove the bytes, then the row, of every upload expired more than `grace` ago;
    returns what was (or, with `dry_run`, would be) removed. An upload whose bytes cannot
    be removed now keeps its row, so the next run tries again."""
    found = await expired_uploads(db, grace=grace)
    if dry_run:
        return found
    partials = build_partial_store(storage)
    removed: list[ExpiredUpload] = []
    for expired in found:
        async with db.session() as session:
            token = await leases.claim(session, expired.id)
            upload = await session.get(TusUpload, expired.id)
        if token is None or upload is None:
            continue  # a PATCH is writing (or another gc got it)
        try:
            await partials.remove(upload)
        except StorageError as exc:
            logger.warning("could not remove the bytes of tus upload %s: %s", upload.id, exc)
            async with db.session() as session:
                await leases.release(session, upload.id, token)
            continue
        async with db.session() as session:
            await session.execute(
                delete(TusUpload)
                .where(leases.held_by(upload.id, token))
                .execution_options(synchronize_session=False)
            )
        removed.append(expired)
    return removed


async def live_storage_keys(db: Database) -> set[str]:
    """Storage keys of unfinished uploads: gc must keep every object whose key is one of
    these or starts with one followed by `.` (S3 tail objects), and every pending S3
    multipart upload under one of them."""
    async with db.session() as session:
        return set(await session.scalars(select(TusUpload.storage_key)))


async def remove_orphan_partials(
    db: Database, storage: Storage, *, grace: timedelta = timedelta(0), dry_run: bool = False
) -> list[str]:
    """Local disk: partial files under `<blobs>/.tus/` that no upload row names and that
    were last written more than `grace` ago (a crash after the File committed and before
    the partial was unlinked). Returns their names. Nothing to do on S3, where the same
    leftovers are ordinary objects without a row."""
    from filesvc.storage.local import LocalStorage
    from filesvc.tus.local import TUS_DIR_NAME

    if not isinstance(storage, LocalStorage):
        return []
    live = await live_storage_keys(db)
    cutoff = (utcnow() - grace).timestamp()
    directory = storage.root / TUS_DIR_NAME

    def _sweep() -> list[str]:
        found: list[str] = []
        try:
            entries = list(directory.iterdir())
        except FileNotFoundError:
            return found
        for path in entries:
            if path.suffix != ".part" or path.stem in live:
                continue
            try:
                if path.stat().st_mtime >= cutoff:
                    continue
                if not dry_run:
                    path.unlink()
            except FileNotFoundError:
                continue
            found.append(path.name)
        return sorted(found)

    return await asyncio.to_thread(_sweep)
