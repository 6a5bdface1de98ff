"""Debris and damage of every kind, made on whichever backend the stack runs, and the
`filesvc` command run in-process on the stack's settings."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from filesvc.cli import main
from filesvc.config import Settings
from filesvc.deps import AppContext
from filesvc.files.models import File
from filesvc.storage.local import LocalStorage
from tests.conftest import storage_root
from tests.seaweedfs import pending_uploads, s3_client

HOUR = 3600


def context(app: FastAPI) -> AppContext:
    ctx: AppContext = app.state.context
    return ctx


async def run_filesvc(
    settings: Settings, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, list[str]]:
    """Exit status and stdout lines of `filesvc ARGS` on these settings (in a thread: it
    runs its own event loop, as the command does)."""
    capsys.readouterr()
    status = await asyncio.to_thread(main, list(args), settings)
    return status, capsys.readouterr().out.splitlines()


async def storage_key(app: FastAPI, file_id: str) -> str:
    async with context(app).db.sessionmaker() as session:
        key = await session.scalar(select(File.storage_key).where(File.id == file_id))
    assert key is not None
    return key


async def store_blob(app: FastAPI, data: bytes, key: str | None = None) -> str:
    """A committed object, under a new key unless one is given."""
    key = key or uuid.uuid4().hex
    writer = await context(app).storage.open_writer(key)
    await writer.write(data)
    await writer.commit()
    return key


async def replace_blob(app: FastAPI, key: str, data: bytes) -> None:
    """Damage: the object's bytes become `data` behind the database's back."""
    await context(app).storage.delete(key)
    await store_blob(app, data, key)


def age(settings: Settings, key: str | None = None, temp_name: str | None = None) -> None:
    """Backdate an object or a temp file by two hours (local disk only)."""
    storage = LocalStorage(settings.resolved_storage_dir)
    path = storage.local_path(key) if key else storage.tmp_dir / str(temp_name)
    then = time.time() - 2 * HOUR
    os.utime(path, (then, then))


def dead_write(settings: Settings, *, idle: bool = True) -> str:
    """An unfinished write no process holds: a crash's temp file (local disk; idle for two
    hours unless `idle` is false) or an abandoned multipart upload with one part (S3).
    Its name as gc prints it."""
    if settings.storage == "s3":
        assert settings.s3_endpoint_url is not None
        assert settings.s3_bucket is not None
        client = s3_client(settings.s3_endpoint_url)
        key = uuid.uuid4().hex
        upload = client.create_multipart_upload(Bucket=settings.s3_bucket, Key=key)
        client.upload_part(
            Bucket=settings.s3_bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=1,
            Body=b"x" * 1024,
        )
        return key
    tmp = LocalStorage(settings.resolved_storage_dir).tmp_dir
    tmp.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.part"
    (tmp / name).write_bytes(b"x" * 1024)
    if idle:
        age(settings, temp_name=name)
    return name


def unfinished_writes(settings: Settings) -> list[str]:
    if settings.storage == "s3":
        assert settings.s3_endpoint_url is not None
        assert settings.s3_bucket is not None
        return pending_uploads(s3_client(settings.s3_endpoint_url), settings.s3_bucket)
    tmp = LocalStorage(settings.resolved_storage_dir).tmp_dir
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


def stored_path(settings: Settings, key: str) -> Path:
    """Where blob_files() lists an object: three levels down on disk, s3:/bucket/key."""
    if settings.storage == "s3":
        return storage_root(settings) / key
    return LocalStorage(settings.resolved_storage_dir).local_path(key)
