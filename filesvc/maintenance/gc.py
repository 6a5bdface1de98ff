"""`filesvc gc`: remove bytes no upload will finish and no row points at; report rows
whose bytes are gone.

A sweep is the list of steps in STEPS, each a small function over the storage and the
database that records what it removed (or, with --dry-run, would remove) and what it
found wrong. Another kind of debris is one more step in that list.

An upload in flight is never touched. Its bytes look like one of these:
- a temp file in <blobs>/.tmp (local disk), still being written: its writer holds an
  exclusive lock on it until the object is linked, and gc skips locked temp files
  whatever their age; an unlocked one is removed once idle (mtime) past the grace;
- a multipart upload (S3), still receiving parts: S3 cannot say whether a client is
  still sending, so it is aborted only when its newest part (or its start) is older than
  the grace;
- an object already committed whose row is not committed yet (both backends): the
  object exists with no row for the moment between the two commits. Storage is listed
  before the rows are read, so a row committed by then protects its object; one
  committed later is still within the grace, since its object was written moments ago.
`--grace 0` drops that margin: use it only while no instance is serving.

An unfinished tus upload is in flight until it expires, however long it idles: its
storage key (a partial file in <blobs>/.tus on local disk; a multipart upload and
`<key>.tail-…` objects on S3) is skipped by the steps above, and its bytes go with its
row once it has expired (FILESVC_TUS_EXPIRATION_SECONDS) more than the grace ago.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute

from filesvc.db import Database
from filesvc.files.models import File
from filesvc.maintenance.common import BATCH, Finding, Progress, file_rows
from filesvc.storage.base import ObjectMeta, ObjectNotFound, Storage
from filesvc.tus.expiry import live_storage_keys, remove_expired_uploads, remove_orphan_partials

# Columns that hold storage keys: an object named in any of them is not an orphan.
HEADS_IN_FLIGHT = 16
KEY_COLUMNS: tuple[InstrumentedAttribute[str], ...] = (File.storage_key,)


@dataclass
class Sweep:
    db: Database
    storage: Storage
    cutoff: datetime  # older than this is stale
    grace: timedelta
    dry_run: bool
    progress: Progress
    removed: list[Finding] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)

    def remove(self, kind: str, target: str, size: int | None, note: str = "") -> None:
        action = "would remove" if self.dry_run else "removed"
        finding = Finding(action, kind, target, size, note)
        self.removed.append(finding)
        self.progress.write(finding.line())

    def report(self, finding: Finding) -> None:
        self.problems.append(finding)
        self.progress.write(finding.line())


Step = Callable[[Sweep], Awaitable[None]]


def _of_live_upload(key: str | None, live: set[str]) -> bool:
    # A tus upload's own objects are its key, or its key and a suffix after a dot.
    return key is not None and key.partition(".")[0] in live


async def sweep_expired_tus_uploads(sweep: Sweep) -> None:
    """tus uploads expired more than the grace ago: their bytes, then their rows."""
    expired = await remove_expired_uploads(
        sweep.db, sweep.storage, grace=sweep.grace, dry_run=sweep.dry_run
    )
    for upload in expired:
        note = f"expired {upload.expires_at.isoformat(timespec='seconds')}"
        sweep.remove("expired tus upload", upload.id, upload.offset, note)
    for name in await remove_orphan_partials(
        sweep.db, sweep.storage, grace=sweep.grace, dry_run=sweep.dry_run
    ):
        sweep.remove("tus partial file", name, None, "no upload names it")


async def sweep_unfinished_writes(sweep: Sweep) -> None:
    """Temp files (local disk) and multipart uploads (S3) idle past the grace."""
    kind = "temp file" if sweep.storage.name == "local" else "multipart upload"
    live = await live_storage_keys(sweep.db)
    with sweep.progress.bar(f"{kind}s") as advance:
        async for pending in sweep.storage.pending_writes():
            advance()
            if pending.last_activity >= sweep.cutoff or _of_live_upload(pending.key, live):
                continue
            target = pending.id if pending.key is None else f"{pending.key} ({pending.id})"
            if not sweep.dry_run and not await sweep.storage.discard_pending(pending):
                continue  # its writer still holds it: an upload in flight
            idle = pending.last_activity.isoformat(timespec="seconds")
            sweep.remove(kind, target, pending.size, f"idle since {idle}")


async def _referenced(db: Database, keys: Iterable[str]) -> set[str]:
    wanted = list(keys)
    found: set[str] = set()
    async with db.sessionmaker() as session:
        for column in KEY_COLUMNS:
            found |= set(await session.scalars(select(column).where(column.in_(wanted))))
    return found


async def sweep_orphan_blobs(sweep: Sweep) -> None:
    """Objects no row points at, written before the grace."""

    async def settle(batch: list[ObjectMeta]) -> None:
        # Rows read after the listing: see the module's docstring.
        referenced = await _referenced(sweep.db, (m.key for m in batch))
        live = await live_storage_keys(sweep.db)
        for meta in batch:
            if meta.key in referenced or meta.last_modified >= sweep.cutoff:
                continue
            if _of_live_upload(meta.key, live):
                continue
            if not sweep.dry_run:
                await sweep.storage.delete(meta.key)
            sweep.remove("orphan blob", meta.key, meta.size)

    batch: list[ObjectMeta] = []
    with sweep.progress.bar("blobs") as advance:
        async for meta in sweep.storage.list():
            advance()
            batch.append(meta)
            if len(batch) >= BATCH:
                await settle(batch)
                batch = []
        if batch:
            await settle(batch)


async def report_missing_blobs(sweep: Sweep) -> None:
    """Rows whose object is gone (reported, never changed: only a person can tell what to
    do about a lost file)."""
    gate = asyncio.Semaphore(HEADS_IN_FLIGHT)

    async def missing(key: str) -> bool:
        async with gate:
            try:
                await sweep.storage.head(key)
            except ObjectNotFound:
                return True
            return False

    with sweep.progress.bar("rows") as advance:
        async for rows in file_rows(sweep.db):
            gone = await asyncio.gather(*(missing(key) for _, key, _, _ in rows))
            for (file_id, key, size, _), is_gone in zip(rows, gone, strict=True):
                advance()
                if is_gone and await _still_points_at(sweep.db, file_id, key):
                    sweep.report(Finding("missing", "blob of file", file_id, size, key))


async def _still_points_at(db: Database, file_id: str, key: str) -> bool:
    async with db.sessionmaker() as session:
        return await session.scalar(select(File.storage_key).where(File.id == file_id)) == key


# The sweep, in order: expired tus uploads first, so their bytes are not kept as live.
STEPS: tuple[Step, ...] = (
    sweep_expired_tus_uploads,
    sweep_unfinished_writes,
    sweep_orphan_blobs,
    report_missing_blobs,
)


async def collect_garbage(
    db: Database,
    storage: Storage,
    *,
    grace: timedelta,
    now: datetime,
    dry_run: bool,
    progress: Progress,
    steps: Iterable[Step] = STEPS,
) -> Sweep:
    sweep = Sweep(db, storage, now - grace, grace, dry_run, progress)
    for step in steps:
        await step(sweep)
    return sweep
