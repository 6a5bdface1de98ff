"""tus on local disk: each upload appends to one partial file under `<root>/.tus/`.

A chunk is written at the recorded offset (anything longer, left by a crash mid-chunk, is
truncated first) and fsynced before its offset is committed, so the offset `HEAD` reports
is always on disk; every 8 MiB written, the disk is asked to start writing them, and
every 16 MiB to flush them, in the background (storage/writeback.py), so that fsync finds
little left. On completion the partial file is hard-linked into place as the blob, the
same create-only move as LocalStorage's commit; no byte is copied.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import aiofiles.os

from filesvc.storage.base import Hasher, StorageError
from filesvc.storage.keys import new_storage_key
from filesvc.storage.local import LocalStorage, write_beside_hashing
from filesvc.storage.writeback import Writeback
from filesvc.tus.models import TusUpload
from filesvc.tus.store import StorageState

TUS_DIR_NAME = ".tus"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_at(path: Path, offset: int) -> int:
    created = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_size != offset:
            os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
        if created:
            _fsync_dir(path.parent)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _link_into_place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.link(source, target)
    _fsync_dir(target.parent)


class LocalChunk:
    def __init__(self, fd: int, start: int, key: str) -> None:
        self._fd: int | None = fd
        self._start = start
        self._key = key
        self._writeback = Writeback(start)
        # One write at a time, each run to its end even if its awaiter is cancelled, so
        # the descriptor is never closed under a write still in its thread.
        self._busy: asyncio.Future[None] | None = None

    async def _run(self, func: object, *args: object) -> None:
        if self._busy is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._busy)
        self._busy = asyncio.ensure_future(asyncio.to_thread(func, *args))  # type: ignore[arg-type]
        try:
            await asyncio.shield(self._busy)
        except OSError as exc:
            raise StorageError(f"tus upload {self._key!r}: {exc.strerror or exc}") from exc

    def _open_fd(self) -> int:
        if self._fd is None:
            raise StorageError("chunk writer is closed")
        return self._fd

    async def write(self, chunks: Sequence[bytes], hashes: Sequence[Hasher]) -> None:
        # One thread hop per batch: the hashes run beside the write, from its thread.
        await self._run(write_beside_hashing, self._open_fd(), chunks, hashes, self._writeback)

    async def keep(self, *, final: bool) -> StorageState:
        await self._run(self._sync, self._open_fd())
        await self._close()
        return {}

    def _sync(self, fd: int) -> None:
        self._writeback.settle()  # a failed background flush fails this chunk
        os.fsync(fd)

    async def discard(self) -> None:
        await asyncio.shield(self._discard())

    async def _discard(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(StorageError):
                await self._run(os.ftruncate, self._fd, self._start)
        await self._close()

    async def settled(self) -> None:
        return None

    async def _close(self) -> None:
        if self._busy is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._busy)
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class LocalPartials:
    def __init__(self, storage: LocalStorage) -> None:
        self.storage = storage
        self.dir = storage.root / TUS_DIR_NAME

    def partial_path(self, upload: TusUpload) -> Path:
        return self.dir / f"{upload.storage_key}.part"

    async def open_chunk(self, upload: TusUpload) -> LocalChunk:
        try:
            fd = await asyncio.to_thread(_open_at, self.partial_path(upload), upload.offset)
        except OSError as exc:
            raise StorageError(f"tus upload {upload.id!r}: {exc.strerror or exc}") from exc
        return LocalChunk(fd, upload.offset, upload.id)

    async def finish(self, upload: TusUpload) -> str:
        # A fresh key each time: a retry after a crash between link and commit must not
        # collide with the blob that attempt left (gc collects that one).
        key = new_storage_key()
        source = self.partial_path(upload)
        try:
            await asyncio.to_thread(_link_into_place, source, self.storage.local_path(key))
        except OSError as exc:
            raise StorageError(f"tus upload {upload.id!r}: {exc.strerror or exc}") from exc
        return key

    async def finished(self, upload: TusUpload) -> None:
        await self.remove(upload)

    async def remove(self, upload: TusUpload) -> None:
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.unlink(self.partial_path(upload))
