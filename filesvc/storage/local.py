"""Local-disk backend: temp file in the same file system, fsync, then link into place.

A writer holds an exclusive flock on its temp file until the object is linked, so `gc`
(another process) can tell a temp file still being written from one left by a crash.

File I/O goes through aiofiles in 1 MiB blocks (the upload pipeline's batches, READ_CHUNK
for reads), so each hop to its thread moves enough bytes to cost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiofiles
import aiofiles.os
from aiofiles.threadpool.binary import AsyncFileIO

from filesvc.storage.base import (
    ByteRange,
    GetResult,
    InvalidKey,
    ObjectAlreadyExists,
    ObjectMeta,
    ObjectNotFound,
    PendingWrite,
    StorageError,
    validate_key,
)

T = TypeVar("T")
TMP_DIR_NAME = ".tmp"
READ_CHUNK = 1024 * 1024


@contextmanager
def _os_errors(key: str) -> Iterator[None]:
    # Callers only know the errors of base.py; keep the OSError as the cause for the logs.
    try:
        yield
    except OSError as exc:
        raise StorageError(f"local storage failed on {key!r}: {exc.strerror or exc}") from exc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> None:
    """mkdir -p that fsyncs the parent of each directory it creates, so they survive a crash."""
    if path.is_dir():
        return
    _make_dirs(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return  # made by a concurrent commit
    _fsync_dir(path.parent)


def _private(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_CLOEXEC, 0o600)


def _private_locked(path: str, flags: int) -> int:
    fd = _private(path, flags)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: never contended
    return fd


def _discard_if_unlocked(path: Path) -> bool:
    """Unlink a temp file unless its writer still holds it; True if it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return True
    finally:
        os.close(fd)


def _meta(key: str, st: os.stat_result) -> ObjectMeta:
    return ObjectMeta(
        key=key, size=st.st_size, last_modified=datetime.fromtimestamp(st.st_mtime, UTC)
    )


async def _in_thread(func: Callable[..., T], *args: object) -> T:
    """A blocking call aiofiles has no wrapper for (fsync, mkdir -p), in aiofiles' executor."""
    result: T = await aiofiles.os.wrap(func)(*args)
    return result


async def _write_all(file: AsyncFileIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = await file.write(view)
        view = view[written:]


async def _unlink_if_present(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        await aiofiles.os.unlink(path)


class LocalBlobWriter:
    def __init__(self, storage: LocalStorage, key: str, file: AsyncFileIO, tmp_path: Path) -> None:
        self.key = key
        self._storage = storage
        self._tmp_path = tmp_path
        self._file: AsyncFileIO | None = file
        # A cancelled await does not stop its worker thread. Each write or commit runs as a
        # task that abort() waits for, so the file is never closed under a write still in
        # its thread (and its fd number reused by another open) and a half-done commit can
        # be undone.
        self._busy: asyncio.Future[Any] | None = None
        self._linked: Path | None = None  # visible, but commit() has not returned yet

    async def _run(self, work: Coroutine[Any, Any, T]) -> T:
        if self._busy is not None and not self._busy.done():
            with contextlib.suppress(BaseException):  # a cancelled earlier call's work
                await asyncio.shield(self._busy)
        task = asyncio.ensure_future(work)
        self._busy = task
        return await asyncio.shield(task)

    async def write(self, data: bytes) -> None:
        if self._file is None:
            raise StorageError("writer is closed")
        with _os_errors(self.key):
            await self._run(_write_all(self._file, data))

    async def commit(self) -> ObjectMeta:
        if self._file is None:
            raise StorageError("writer is closed")
        try:
            with _os_errors(self.key):
                meta = await self._run(self._commit())
        except BaseException:
            await self.abort()
            raise
        self._linked = None
        return meta

    async def _commit(self) -> ObjectMeta:
        file, self._file = self._file, None
        if file is None:
            raise StorageError("writer is closed")
        final = self._storage.local_path(self.key)
        try:
            await _in_thread(os.fsync, file.fileno())
            await _in_thread(_make_dirs, final.parent)
            try:
                # link() rather than rename(): create-only, it never replaces an object.
                await aiofiles.os.link(self._tmp_path, final)
            except FileExistsError:
                raise ObjectAlreadyExists(self.key) from None
            self._linked = final
        finally:
            await file.close()  # only now: the lock keeps gc off the temp file until linked
        await _unlink_if_present(self._tmp_path)
        await _in_thread(_fsync_dir, final.parent)
        return _meta(self.key, await aiofiles.os.stat(final))

    async def abort(self) -> None:
        # Shielded: a cancelled request must still remove its temp file.
        with _os_errors(self.key):
            await asyncio.shield(self._abort())

    async def _abort(self) -> None:
        busy, self._busy = self._busy, None
        if busy is not None:
            with contextlib.suppress(BaseException):  # its error is the one being reported
                await busy
        file, self._file = self._file, None
        if file is not None:
            await file.close()
        linked, self._linked = self._linked, None
        if linked is not None:
            # commit() was cancelled after the link: its caller saw a failure.
            await _unlink_if_present(linked)
        await _unlink_if_present(self._tmp_path)


class _FileChunks:
    """Reads [start, end) of an open file in READ_CHUNK blocks; unlike an async generator's
    finally block, aclose() releases the file even when iteration never started."""

    def __init__(self, key: str, file: AsyncFileIO, start: int, end: int) -> None:
        self._key = key
        self._file: AsyncFileIO | None = file
        self._position = start
        self._end = end
        self._reading: asyncio.Future[bytes] | None = None

    def __aiter__(self) -> _FileChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._position >= self._end or self._file is None:
            await self.aclose()
            raise StopAsyncIteration
        size = min(READ_CHUNK, self._end - self._position)
        with _os_errors(self._key):
            self._reading = asyncio.ensure_future(self._file.read(size))
            chunk = await asyncio.shield(self._reading)
        if not chunk:
            raise StorageError(f"object {self._key!r} is shorter than expected")
        self._position += len(chunk)
        return chunk

    async def aclose(self) -> None:
        self._position = self._end
        file, self._file = self._file, None
        if file is None:
            return
        if self._reading is not None:
            # Never close the file under a read still running in its thread.
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._reading)
        await file.close()


class LocalStorage:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.tmp_dir = self.root / TMP_DIR_NAME

    def local_path(self, key: str) -> Path:
        validate_key(key)
        # Two levels of fan-out keep directories small with millions of objects. Short keys
        # are padded so every object sits exactly three levels down, never where a fan-out
        # directory must go (key "ab" at ab/ab would block "abab…" at ab/ab/abab…).
        fan = key.ljust(4, "_")
        return self.root / fan[:2] / fan[2:4] / key

    async def open_writer(self, key: str) -> LocalBlobWriter:
        validate_key(key)
        tmp_path = self.tmp_dir / f"{uuid.uuid4().hex}.part"
        with _os_errors(key):
            await aiofiles.os.makedirs(self.tmp_dir, exist_ok=True)
            # "xb": created here or an error, never an existing file; 0600 via the opener.
            file = await aiofiles.open(tmp_path, "xb", buffering=0, opener=_private_locked)
        return LocalBlobWriter(self, key, file, tmp_path)

    async def head(self, key: str) -> ObjectMeta:
        path = self.local_path(key)
        with _os_errors(key):
            try:
                st = await aiofiles.os.stat(path)
            except FileNotFoundError:
                raise ObjectNotFound(key) from None
        return _meta(key, st)

    async def get(self, key: str, byte_range: ByteRange | None = None) -> GetResult:
        path = self.local_path(key)
        with _os_errors(key):
            try:
                file = await aiofiles.open(path, "rb", buffering=0)
            except FileNotFoundError:
                raise ObjectNotFound(key) from None
            try:
                meta = _meta(key, await _in_thread(os.fstat, file.fileno()))
                if byte_range is None:
                    byte_range = ByteRange(0, meta.size)
                clamped = ByteRange(
                    min(byte_range.start, meta.size), min(byte_range.end, meta.size)
                )
                await file.seek(clamped.start)
            except BaseException:
                await file.close()
                raise
        chunks = _FileChunks(key, file, clamped.start, clamped.end)
        return GetResult(meta=meta, range=clamped, chunks=chunks)

    async def delete(self, key: str) -> None:
        path = self.local_path(key)
        with _os_errors(key):
            await _unlink_if_present(path)

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectMeta]:
        def _subdirs(path: str, name_prefix: str) -> list[str]:
            try:
                with os.scandir(path) as entries:
                    return [
                        entry.path
                        for entry in entries
                        if entry.name.startswith(name_prefix)
                        and entry.name != TMP_DIR_NAME
                        and entry.is_dir(follow_symlinks=False)
                    ]
            except FileNotFoundError:
                return []

        def _scan() -> list[ObjectMeta]:
            # Objects sit exactly three levels down; the prefix prunes the fan-out levels.
            found: list[ObjectMeta] = []
            for first in _subdirs(str(self.root), prefix[:2]):
                for second in _subdirs(first, prefix[2:4]):
                    with os.scandir(second) as entries:
                        for entry in entries:
                            if not entry.name.startswith(prefix) or not entry.is_file():
                                continue
                            try:
                                found.append(_meta(entry.name, entry.stat()))
                            except FileNotFoundError:
                                continue  # deleted meanwhile
            return sorted(found, key=lambda m: m.key)

        with _os_errors(prefix):
            found = await _in_thread(_scan)
        for meta in found:
            yield meta

    async def pending_writes(self) -> AsyncIterator[PendingWrite]:
        def _scan() -> list[PendingWrite]:
            found: list[PendingWrite] = []
            try:
                entries = list(os.scandir(self.tmp_dir))
            except FileNotFoundError:
                return found
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # committed or aborted meanwhile
                if entry.is_file(follow_symlinks=False):
                    found.append(
                        PendingWrite(
                            id=entry.name,
                            key=None,
                            size=st.st_size,
                            last_activity=datetime.fromtimestamp(st.st_mtime, UTC),
                        )
                    )
            return sorted(found, key=lambda p: p.id)

        with _os_errors(TMP_DIR_NAME):
            found = await _in_thread(_scan)
        for pending in found:
            yield pending

    async def discard_pending(self, pending: PendingWrite) -> bool:
        path = self.tmp_dir / pending.id
        if path.parent != self.tmp_dir or pending.id in ("", ".", ".."):
            raise InvalidKey(f"invalid temp file name {pending.id!r}")
        with _os_errors(pending.id):
            return await _in_thread(_discard_if_unlocked, path)

    async def check(self) -> None:
        def _probe() -> None:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            probe = self.tmp_dir / f"probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()

        try:
            await _in_thread(_probe)
        except OSError as exc:
            raise StorageError(
                f"local storage at {self.root} is not writable: {exc.strerror}"
            ) from exc

    async def aclose(self) -> None:
        return None
