"""`filesvc scrub`: read stored blobs back, recompute their SHA-256 and size, and report
every file whose bytes are missing, unreadable or not the ones uploaded."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy import func, select

from filesvc.db import Database
from filesvc.files.models import File
from filesvc.maintenance.common import Finding, Progress, file_rows
from filesvc.storage.base import ObjectNotFound, Storage, StorageError

READS_IN_FLIGHT = 4
Row = tuple[str, str, int, str]  # id, storage key, size, sha256


@dataclass
class Scrub:
    checked: int = 0
    bytes_read: int = 0
    problems: list[Finding] = field(default_factory=list)


async def _sample(db: Database, count: int) -> AsyncIterator[list[Row]]:
    async with db.sessionmaker() as session:
        rows = (
            await session.execute(
                select(File.id, File.storage_key, File.size, File.sha256)
                .order_by(func.random())
                .limit(count)
            )
        ).all()
    yield [(r[0], r[1], r[2], r[3]) for r in rows]


async def _digest(storage: Storage, key: str) -> tuple[str, int]:
    result = await storage.get(key)
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in result.chunks:
            # hashlib lets go of the GIL on big buffers: other reads go on meanwhile.
            await asyncio.to_thread(digest.update, chunk)
            size += len(chunk)
    finally:
        await result.aclose()
    return digest.hexdigest(), size


async def _check(storage: Storage, row: Row) -> Finding | None:
    file_id, key, size, sha256 = row
    try:
        actual, actual_size = await _digest(storage, key)
    except ObjectNotFound:
        return Finding("missing", "blob of file", file_id, size, key)
    except StorageError as exc:
        return Finding("unreadable", "blob of file", file_id, size, str(exc))
    if actual_size != size:
        return Finding("mismatch", "blob of file", file_id, size, f"{actual_size} bytes stored")
    if actual != sha256:
        return Finding("mismatch", "blob of file", file_id, size, f"sha256 {actual}")
    return None


async def _total(db: Database, sample: int | None) -> int:
    async with db.sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(File)) or 0
    return count if sample is None else min(sample, count)


async def scrub(db: Database, storage: Storage, *, sample: int | None, progress: Progress) -> Scrub:
    """Every file, or `sample` files drawn at random."""
    report = Scrub()
    batches = file_rows(db) if sample is None else _sample(db, sample)
    gate = asyncio.Semaphore(READS_IN_FLIGHT)

    async def check(row: Row) -> Finding | None:
        async with gate:
            return await _check(storage, row)

    with progress.bar("blobs", total=await _total(db, sample)) as advance:
        async for rows in batches:
            for row, finding in zip(
                rows, await asyncio.gather(*(check(row) for row in rows)), strict=True
            ):
                report.checked += 1
                report.bytes_read += row[2] if finding is None else 0
                advance()
                if finding is not None and await _still_stored(db, row):
                    report.problems.append(finding)
                    progress.write(finding.line())
    return report


async def _still_stored(db: Database, row: Row) -> bool:
    """A file deleted or replaced while it was read is not a problem."""
    async with db.sessionmaker() as session:
        key = await session.scalar(select(File.storage_key).where(File.id == row[0]))
    return key == row[1]
