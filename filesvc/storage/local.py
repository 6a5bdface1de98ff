"""Local-disk backend: temp file in the same file system, fsync, then link into place."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from filesvc.storage.base import (
    ByteRange,
    GetResult,
    ObjectAlreadyExists,
    ObjectMeta,
    ObjectNotFound,
    StorageError,
    validate_key,
)

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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _meta(key: str, st: os.stat_result) -> ObjectMeta:
    return ObjectMeta(
        key=key, size=st.st_size, last_modified=datetime.fromtimestamp(st.st_mtime, UTC)
    )


class LocalBlobWriter:
    def __init__(self, storage: LocalStorage, key: str, fd: int, tmp_path: Path) -> None:
        self.key = key
        self._storage = storage
        self._tmp_path = tmp_path
        # A cancelled await does not stop its worker thread. The lock makes abort() wait for
        # a write or commit still running, so the fd is never closed under it (and its
        # number reused by another open) and a half-done commit can be undone.
        self._lock = threading.Lock()
        self._fd: int | None = fd
        self._linked: Path | None = None  # visible, but commit() has not returned yet

    async def write(self, data: bytes) -> None:
        with _os_errors(self.key):
            await asyncio.to_thread(self._write_sync, data)

    def _write_sync(self, data: bytes) -> None:
        with self._lock:
            if self._fd is None:
                raise StorageError("writer is closed")
            _write_all(self._fd, data)

    async def commit(self) -> ObjectMeta:
        try:
            with _os_errors(self.key):
                meta = await asyncio.to_thread(self._commit_sync)
        except BaseException:
            await self.abort()
            raise
        self._linked = None
        return meta

    def _commit_sync(self) -> ObjectMeta:
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is None:
                raise StorageError("writer is closed")
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            final = self._storage.local_path(self.key)
            _make_dirs(final.parent)
            try:
                # link() rather than rename(): create-only, it never replaces an object.
                os.link(self._tmp_path, final)
            except FileExistsError:
                raise ObjectAlreadyExists(self.key) from None
            self._linked = final
            self._tmp_path.unlink()
            _fsync_dir(final.parent)
            return _meta(self.key, final.stat())

    async def abort(self) -> None:
        # Shielded: a cancelled request must still remove its temp file.
        with _os_errors(self.key):
            await asyncio.shield(asyncio.to_thread(self._abort_sync))

    def _abort_sync(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._linked is not None:
                # commit() was cancelled after the link: its caller saw a failure.
                self._linked.unlink(missing_ok=True)
                self._linked = None
            self._tmp_path.unlink(missing_ok=True)


class _FileChunks:
    """Reads [start, end) of an open file; unlike an async generator's finally block,
    aclose() releases the file even when iteration never started."""

    def __init__(self, key: str, file: io.FileIO, start: int, end: int) -> None:
        self._key = key
        self._file = file
        self._position = start
        self._end = end

    def __aiter__(self) -> _FileChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._position >= self._end:
            await self.aclose()
            raise StopAsyncIteration
        size = min(READ_CHUNK, self._end - self._position)
        with _os_errors(self._key):
            chunk = await asyncio.to_thread(os.pread, self._file.fileno(), size, self._position)
        if not chunk:
            raise StorageError(f"object {self._key!r} is shorter than expected")
        self._position += len(chunk)
        return chunk

    async def aclose(self) -> None:
        self._position = self._end
        self._file.close()


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

        def _open() -> int:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            return os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)

        with _os_errors(key):
            fd = await asyncio.to_thread(_open)
        return LocalBlobWriter(self, key, fd, tmp_path)

    async def head(self, key: str) -> ObjectMeta:
        path = self.local_path(key)
        with _os_errors(key):
            try:
                st = await asyncio.to_thread(path.stat)
            except FileNotFoundError:
                raise ObjectNotFound(key) from None
        return _meta(key, st)

    async def get(self, key: str, byte_range: ByteRange | None = None) -> GetResult:
        path = self.local_path(key)

        def _open() -> tuple[io.FileIO, os.stat_result]:
            file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by _FileChunks
            return file, os.fstat(file.fileno())

        with _os_errors(key):
            try:
                file, st = await asyncio.to_thread(_open)
            except FileNotFoundError:
                raise ObjectNotFound(key) from None
        meta = _meta(key, st)
        if byte_range is None:
            byte_range = ByteRange(0, meta.size)
        clamped = ByteRange(min(byte_range.start, meta.size), min(byte_range.end, meta.size))
        chunks = _FileChunks(key, file, clamped.start, clamped.end)
        return GetResult(meta=meta, range=clamped, chunks=chunks)

    async def delete(self, key: str) -> None:
        path = self.local_path(key)
        with _os_errors(key):
            await asyncio.to_thread(path.unlink, missing_ok=True)

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
            found = await asyncio.to_thread(_scan)
        for meta in found:
            yield meta

    async def check(self) -> None:
        def _probe() -> None:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            probe = self.tmp_dir / f"probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()

        try:
            await asyncio.to_thread(_probe)
        except OSError as exc:
            raise StorageError(
                f"local storage at {self.root} is not writable: {exc.strerror}"
            ) from exc

    async def aclose(self) -> None:
        return None
