"""`filesvc gc` on both stacks (SQLite + local disk, PostgreSQL + S3): each kind of debris
is removed once past the grace, nothing young or in flight is touched, and files whose
blob is gone are reported (exit status 1) but left as they are."""

from __future__ import annotations

import os
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from filesvc.config import Settings
from filesvc.db import utcnow
from filesvc.maintenance.common import parse_duration
from filesvc.tus.models import TusUpload
from tests.conftest import Account, blob_files
from tests.files.helpers import sha256, uploaded
from tests.maintenance.helpers import (
    age,
    context,
    dead_write,
    run_filesvc,
    storage_key,
    store_blob,
    stored_path,
    unfinished_writes,
)
from tests.tus.helpers import TUS, created, offset_of, patch

MiB = 1024 * 1024


async def test_gc_removes_debris_and_reports_lost_files(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kept = await uploaded(client, admin, data=b"kept\n")
    lost = await uploaded(client, admin, data=b"lost\n")
    kept_key, lost_key = await storage_key(app, kept["id"]), await storage_key(app, lost["id"])
    await context(app).storage.delete(lost_key)
    orphan = await store_blob(app, b"no row points at me")
    dead = dead_write(settings)
    if settings.storage == "local":
        # Local files can be backdated: the grace is measured, not zero.
        age(settings, key=orphan)
        age(settings, key=kept_key)
        grace = "30m"
    else:
        grace = "0"  # S3 sets its own times: everything is older than now
    before = blob_files(settings)

    status, lines = await run_filesvc(settings, capsys, "gc", "--dry-run", "--grace", grace)
    assert status == 1, lines
    assert any(line.startswith(f"would remove orphan blob {orphan}") for line in lines), lines
    assert any(line.startswith("would remove") and dead in line for line in lines), lines
    assert any(line.startswith(f"missing blob of file {lost['id']}") for line in lines), lines
    assert lines[-1].startswith("gc: would remove 2 item(s)"), lines
    assert blob_files(settings) == before

    status, lines = await run_filesvc(settings, capsys, "gc", "--grace", grace)
    assert status == 1, lines
    assert any(line.startswith(f"removed orphan blob {orphan}") for line in lines), lines
    assert lines[-1].startswith("gc: removed 2 item(s)"), lines
    assert lines[-1].endswith("1 file(s) whose blob is missing"), lines
    assert blob_files(settings) == [stored_path(settings, kept_key)]
    assert unfinished_writes(settings) == []
    # The lost file stays listed: what to do about it is a person's call.
    assert (
        await client.get(f"/api/v1/files/{lost['id']}", headers=admin.headers)
    ).status_code == 200
    download = await client.get(f"/api/v1/files/{kept['id']}/content", headers=admin.headers)
    assert sha256(download.content) == sha256(b"kept\n")

    status, lines = await run_filesvc(settings, capsys, "gc", "--grace", grace)
    assert status == 1
    assert lines[-1].startswith("gc: removed 0 item(s), 0 bytes; 1 file(s)"), lines


async def test_gc_leaves_young_debris_alone(
    app: FastAPI, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    orphan = await store_blob(app, b"maybe its row is about to commit")
    dead = dead_write(settings, idle=False)
    before = blob_files(settings)

    status, lines = await run_filesvc(settings, capsys, "gc")  # the default grace: 1h
    assert status == 0, lines
    assert lines == ["gc: removed 0 item(s), 0 bytes; 0 file(s) whose blob is missing"]
    assert blob_files(settings) == before
    assert stored_path(settings, orphan) in before
    assert any(dead in name for name in unfinished_writes(settings))


async def test_gc_never_touches_an_upload_in_flight(
    app: FastAPI, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = context(app).storage
    writer = await storage.open_writer("inflight0000")
    await writer.write(b"x" * (6 * MiB))  # past one S3 part: a multipart upload is open
    pending = [p async for p in storage.pending_writes()]
    assert len(pending) == 1
    if settings.storage == "local":
        # Idle for two hours and past a zero grace: only its writer's lock protects it.
        age(settings, temp_name=pending[0].id)
        grace = "0"
    else:
        # S3 cannot tell a live multipart upload from a dead one: the grace protects it.
        grace = "1h"

    status, lines = await run_filesvc(settings, capsys, "gc", "--grace", grace)
    assert status == 0, lines
    assert lines[-1].startswith("gc: removed 0 item(s)"), lines
    await writer.write(b"y")
    meta = await writer.commit()
    assert meta.size == 6 * MiB + 1
    assert [m.key async for m in storage.list()] == ["inflight0000"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("30s", 30), ("45", 45), ("15m", 900), ("1h", 3600), ("2d", 172_800)],
)
def test_grace_durations(text: str, expected: int) -> None:
    assert parse_duration(text) == timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["", "1.5h", "-1h", "1w", "h", "1 h 2"])
def test_grace_durations_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


async def test_gc_keeps_unfinished_tus_uploads_and_removes_expired_ones(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    live_url = await created(client, admin, 7 * MiB)
    expired_url = await created(client, admin, 7 * MiB)
    # 6 MiB + 1 KiB each: one S3 part and a tail object, or a partial file on disk.
    head = os.urandom(6 * MiB + 1024)
    for url in (live_url, expired_url):
        assert (await patch(client, admin, url, 0, head)).status_code == 204
    expired_id = expired_url.rsplit("/", 1)[1]
    async with context(app).db.session() as session:
        await session.execute(
            update(TusUpload)
            .where(TusUpload.id == expired_id)
            .values(expires_at=utcnow() - timedelta(hours=2))
        )
        expired_key = await session.scalar(
            select(TusUpload.storage_key).where(TusUpload.id == expired_id)
        )
    assert expired_key is not None

    # Grace 0: whatever is not in flight goes, and an idle tus upload is in flight.
    status, lines = await run_filesvc(settings, capsys, "gc", "--grace", "0")
    assert status == 0, lines
    assert any(line.startswith(f"removed expired tus upload {expired_id}") for line in lines), lines
    assert lines[-1].startswith("gc: removed 1 item(s)"), lines  # that upload, nothing else

    # The expired upload is gone with all its bytes...
    assert (await client.head(expired_url, headers={**admin.headers, **TUS})).status_code == 404
    assert not any(expired_key in str(path) for path in blob_files(settings))
    assert not any(expired_key in name for name in unfinished_writes(settings))
    assert not (settings.resolved_storage_dir / ".tus" / f"{expired_key}.part").exists()
    # ...and the live one resumes where it was and completes whole.
    assert await offset_of(client, admin, live_url) == len(head)
    rest = os.urandom(7 * MiB - len(head))
    finished = await patch(client, admin, live_url, len(head), rest)
    assert finished.status_code == 204, finished.text
    file_id = finished.headers["x-file-id"]
    download = await client.get(f"/api/v1/files/{file_id}/content", headers=admin.headers)
    assert sha256(download.content) == sha256(head + rest)
