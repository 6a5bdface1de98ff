"""Local-disk backend: temp file in the same file system, fsync, then link into place.

Reads go through aiofiles in READ_CHUNK blocks, so each hop to its thread moves enough
bytes to cost nothing. The upload writer does not: its work runs as whole jobs in its own
thread pool (`_disk_pool`), one per 1 MiB batch (os.writev of the chunks as they came off
the socket, never joined, while a second thread hashes them) and one for the commit (the
last bytes, the hash check, fsync, link, fsync of the directory). Every 8 MiB written, a
big file's pages are handed to the disk, and every 16 MiB flushed in the background
(writeback.py), so its fsync finds little left.
aiofiles would cost a thread hop per call (about seven for a small upload's commit) and
has no writev; its default executor is the loop's six threads, shared with everything
else, where a slow fsync would hold a thread that a database driver or a download is
waiting for. A small body committed at once (up to INLINE_BYTES) is written and linked on
the loop, and only its fsyncs go to a thread.

A writer holds an exclusive flock on its temp file until the object is linked, so `gc`
(another process) can tell a temp file still being written from one left by a crash. A
body that comes whole in its commit (up to a batch: a 1 MiB upload) has no name at all
until it is linked (O_TMPFILE, where the file system has it): a crash leaves nothing, and
there is no name to create, lock and unlink in the one temp directory that every
concurrent upload would otherwise change (64 uploads of 1 MiB at once: 3.9-4.3 CPU-s per
GiB rather than 3.9-5.0, README "Durable writes").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import fcntl
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiofiles
import aiofiles.os
from aiofiles.threadpool.binary import AsyncFileIO

from filesvc import thread_jobs
from filesvc.ids import uuid4_hex
from filesvc.storage.base import (
    ByteRange,
    GetResult,
    Hasher,
    InvalidKey,
    ObjectAlreadyExists,
    ObjectMeta,
    ObjectNotFound,
    PendingWrite,
    StorageError,
    hash_chunks,
    validate_key,
)
from filesvc.storage.keys import PREFIX_DIGITS
from filesvc.storage.writeback import Writeback

T = TypeVar("T")
TMP_DIR_NAME = ".tmp"
# A body of at most this many bytes, all in the commit, is hashed, written and linked on the
# event loop, and only its fsyncs, which wait for the disk, go to a thread. Every system
# call in a thread lets go of the GIL and must take it back from the busy loop, a wait of
# up to the switch interval (5 ms) each: a small upload's commit in one thread job made
# about a dozen such waits, 13 to 15 ms under load (4 KiB PUTs, 16 at a time), against 4
# to 6 ms for its fsyncs alone. These calls only touch the page cache, like the SQLite
# statements the loop writer runs (loop_writes.py).
INLINE_BYTES = 64 * 1024
READ_CHUNK = 1024 * 1024
# Upload jobs mostly wait for the disk (fsync), so there are more threads than cores: each
# upload has at most one job in flight, and concurrent fsyncs share the journal commit.
DISK_THREADS = 32
# POSIX guarantees at least 16 buffers per writev; Linux takes 1024.
IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16
# Not tied to one event loop: each job hands its outcome to the loop that submitted it.
_disk_pool = thread_jobs.JobThreads(DISK_THREADS, "filesvc-disk")


@contextmanager
def _os_errors(key: str) -> Iterator[None]:
    # Callers only know the errors of base.py; keep the OSError as the cause for the logs.
    try:
        yield
    except OSError as exc:
        raise StorageError(f"local storage failed on {key!r}: {exc.strerror or exc}") from exc


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FanOutDirs:
    """The fan-out directories known to exist durably, so a commit into one makes no
    system call for it. Bounded by the fan-out itself: 256 + 256² paths at most. A
    directory removed behind our back is found by the link that fails, which forgets it
    and makes it again. Paths are strings: this runs on the loop for every small upload,
    where pathlib's objects cost more than the set lookups."""

    def __init__(self, root: Path) -> None:
        self._root = str(root)
        self._known: set[str] = set()

    def make(self, path: str) -> list[str]:
        """Make `path` and its missing parents under the root (without fsyncs); return the
        directories whose entries are not known to be durable yet: the ones to fsync after
        the blob's own fsync, before calling `synced`. Every commit into a directory not
        known yet fsyncs them, whoever made it: no 201 counts on another's fsync."""
        unsynced: list[str] = []
        current = path
        while current != self._root and current not in self._known:
            current = os.path.dirname(current)
            unsynced.append(current)
        if unsynced:
            _make_dirs(path)
        return unsynced

    def synced(self, path: str) -> None:
        """`path` and its parents up to the root are durable now."""
        while path != self._root and path not in self._known:
            self._known.add(path)
            path = os.path.dirname(path)

    def forget(self, path: str) -> None:
        while path != self._root:
            self._known.discard(path)
            path = os.path.dirname(path)


def _make_dirs(path: str) -> None:
    """mkdir -p: the directory first, its parents only if it has none (as Path.mkdir)."""
    try:
        os.mkdir(path)
    except FileNotFoundError:
        _make_dirs(os.path.dirname(path))
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


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
    """A blocking call aiofiles has no wrapper for (fstat, a directory scan), in aiofiles'
    executor."""
    result: T = await aiofiles.os.wrap(func)(*args)
    return result


def writev_all(fd: int, chunks: Sequence[bytes]) -> None:
    """Write the chunks in order with as few system calls as the kernel allows."""
    views = [memoryview(chunk) for chunk in chunks if chunk]
    first = 0
    while first < len(views):
        written = os.writev(fd, views[first : first + IOV_MAX])
        while written:
            size = len(views[first])
            if written < size:
                views[first] = views[first][written:]
                break
            written -= size
            first += 1


# Hashing is all CPU, so a few threads are as many as can run at once.
_hash_threads = concurrent.futures.ThreadPoolExecutor(4, "filesvc-hash")


def write_beside_hashing(
    fd: int, chunks: Sequence[bytes], hashers: Sequence[Hasher], writeback: Writeback
) -> None:
    """In a thread: write the chunks while other threads hash them, and return once all
    are done. Each takes about as long as the other (1 GiB: 0.9 s of SHA-256, 0.3 to 1.3 s
    of copying into the page cache), and both let go of the GIL."""
    hashing = [_hash_threads.submit(hash_chunks, [hasher], chunks) for hasher in hashers]
    try:
        writev_all(fd, chunks)
        writeback.wrote(fd, sum(map(len, chunks)))
    finally:
        concurrent.futures.wait(hashing)  # the hashers are the caller's again only then
    for done in hashing:
        done.result()


def _unlink_if_present(path: str | Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@dataclass(frozen=True, slots=True)
class _Linked:
    stat: os.stat_result
    path: str
    unsynced_dirs: list[str]


class LocalBlobWriter:
    """One temp file; every job on it runs in `_disk_pool`, one at a time, in order.

    The temp file is made by the first job, not by `open_writer`: a small upload's whole
    life on disk is then its commit, whose create, bytes and link run on the loop and
    fsyncs in one thread job (INLINE_BYTES)."""

    def __init__(self, storage: LocalStorage, key: str) -> None:
        self.key = key
        self._storage = storage
        self._tmp_path: Path | None = None  # once the first job has made it
        self._fd: int | None = None
        self._closed = False
        # A cancelled await does not stop its worker thread. abort() waits for the job in
        # flight, so the fd is never closed under a write still in its thread (and its
        # number reused by another open) and a half-done commit can be undone.
        self._busy: thread_jobs.Job[Any] | None = None
        self._linked: str | None = None  # visible, but commit() has not returned yet
        self._writeback = Writeback()

    async def _run(self, job: Callable[[], T]) -> T:
        if self._busy is not None:
            with contextlib.suppress(BaseException):  # a cancelled earlier call's job
                await thread_jobs.finished(self._busy)
        self._busy, outcome = thread_jobs.submit(_disk_pool, job)
        result: T = await outcome
        return result

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("writer is closed")

    def _open_fd(self, unnamed: bool = False) -> int:
        """The temp file's fd, made by the first job (O_EXCL, 0600, locked), or by a commit
        with the whole body as a file with no name at all where the file system can
        (`unnamed`)."""
        if self._closed:
            raise StorageError("writer is closed")
        if self._fd is None:
            fd = self._storage.make_unnamed_file() if unnamed else None
            if fd is None:
                self._tmp_path, fd = self._storage.make_temp_file()
            self._fd = fd
        return self._fd

    async def write(self, data: bytes) -> None:
        await self.write_hashed([data], None)

    async def write_hashed(self, chunks: Sequence[bytes], hasher: Hasher | None) -> None:
        self._check_open()

        def job() -> None:
            hashers = [] if hasher is None else [hasher]
            write_beside_hashing(self._open_fd(), chunks, hashers, self._writeback)

        with _os_errors(self.key):
            await self._run(job)

    async def commit(self) -> ObjectMeta:
        return await self.commit_hashed([], None, None)

    async def commit_hashed(
        self,
        chunks: Sequence[bytes],
        hasher: Hasher | None,
        verify: Callable[[str], None] | None,
    ) -> ObjectMeta:
        self._check_open()

        def write_and_link(unnamed: bool = False) -> tuple[int, _Linked]:
            fd = self._open_fd(unnamed)
            if hasher is not None:
                for chunk in chunks:
                    hasher.update(chunk)
            writev_all(fd, chunks)
            self._writeback.settle()  # a failed background flush fails the commit here
            if verify is not None and hasher is not None:
                verify(hasher.hexdigest())  # before anything becomes visible
            return fd, self._link(fd)

        def job() -> ObjectMeta:
            # The whole body in this job (up to a batch): no name until it is linked.
            return self._sync(*write_and_link(unnamed=self._fd is None))

        try:
            with _os_errors(self.key):
                if self._fd is None and sum(map(len, chunks)) <= INLINE_BYTES:
                    fd, linked = write_and_link(unnamed=True)  # on the loop: INLINE_BYTES
                    meta = await self._run(lambda: self._sync(fd, linked))
                else:
                    meta = await self._run(job)
        except BaseException:
            await self.abort()
            raise
        self._linked = None
        return meta

    def _link(self, fd: int) -> _Linked:
        """Link the written temp file into place (everything of a commit but its fsyncs);
        the fd is closed if this fails, else by `_sync`."""
        self._fd = None
        self._closed = True
        # An unnamed file (O_TMPFILE) is linked through its /proc/self/fd entry, followed:
        # linkat(AT_SYMLINK_FOLLOW), which os.link asks for only given a directory fd
        # (ignored for an absolute path).
        if self._tmp_path is not None:
            source, source_dir_fd = str(self._tmp_path), None
        else:
            source, source_dir_fd = f"/proc/self/fd/{fd}", fd
        dirs = self._storage.fan_out_dirs
        try:
            st = os.fstat(fd)
            final = self._storage.object_path(self.key)
            directory = os.path.dirname(final)
            unsynced = dirs.make(directory)
            try:
                # link() rather than rename(): create-only, it never replaces an object.
                try:
                    os.link(source, final, src_dir_fd=source_dir_fd)
                except FileNotFoundError:  # a known directory was removed meanwhile
                    dirs.forget(directory)
                    unsynced = dirs.make(directory)
                    os.link(source, final, src_dir_fd=source_dir_fd)
            except FileExistsError:
                raise ObjectAlreadyExists(self.key) from None
            self._linked = final
            if self._tmp_path is not None:
                os.unlink(self._tmp_path)
        except BaseException:
            os.close(fd)  # only now: its lock keeps gc off the temp file until it is linked
            raise
        return _Linked(st, final, unsynced)

    def _sync(self, fd: int, linked: _Linked) -> ObjectMeta:
        """The fsyncs that make a linked object durable; closes its fd."""
        try:
            # Every name first, then the one fsync of the data: a journaling file system
            # (ext4) commits them all with it, in one journal commit rather than one per
            # fsync, and the directory fsyncs below that POSIX asks for find them written.
            # Linked before durable is safe: nothing reads an object before its row
            # commits, after all of these; a crash leaves an orphan for gc.
            os.fsync(fd)
        finally:
            os.close(fd)
        directory = os.path.dirname(linked.path)
        _fsync_dir(directory)
        for parent in linked.unsynced_dirs:
            _fsync_dir(parent)
        self._storage.fan_out_dirs.synced(directory)
        return _meta(self.key, linked.stat)

    async def abort(self) -> None:
        # Shielded: a cancelled request must still remove its temp file.
        with _os_errors(self.key):
            await asyncio.shield(self._abort())

    async def _abort(self) -> None:
        busy, self._busy = self._busy, None
        if busy is not None:
            await thread_jobs.finished(busy)
        fd, self._fd = self._fd, None
        self._closed = True
        linked, self._linked = self._linked, None
        tmp_path = self._tmp_path

        def job() -> None:
            if linked is not None:
                # commit() was cancelled after the link: its caller saw a failure.
                _unlink_if_present(linked)
            if tmp_path is not None:
                _unlink_if_present(tmp_path)
            if fd is not None:
                os.close(fd)  # after the unlink: gc never sees it unlocked

        await thread_jobs.run(_disk_pool, job)


def read_file_chunks(path: Path, key: str) -> Iterator[bytes]:
    """A local blob's bytes in READ_CHUNK blocks, read in the calling thread (blocking), with
    the errors `LocalStorage.get` raises: for a caller that is a thread of its own already
    (a zip archive's), where a hop to the loop and one more thread per chunk cost more
    than the read."""
    with _os_errors(key):
        try:
            with open(path, "rb", buffering=0) as file:
                while chunk := file.read(READ_CHUNK):
                    yield chunk
        except FileNotFoundError:  # only the open can raise it
            raise ObjectNotFound(key) from None


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
        if file is not None:
            # Shielded: a cancelled request is cancelled again at every await of its
            # scope, and the file must be closed all the same.
            await asyncio.shield(_close_after_read(file, self._reading))


async def _close_after_read(file: AsyncFileIO, reading: asyncio.Future[bytes] | None) -> None:
    if reading is not None:
        # Never close the file under a read still running in its thread.
        with contextlib.suppress(BaseException):
            await reading
    await file.close()


class LocalStorage:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._root = str(self.root)
        self.tmp_dir = self.root / TMP_DIR_NAME
        self.fan_out_dirs = _FanOutDirs(self.root)
        # Linking an unnamed file needs its /proc/self/fd entry.
        self._unnamed_files = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")

    def local_path(self, key: str) -> Path:
        return Path(self.object_path(key))

    def object_path(self, key: str) -> str:
        """`local_path` as a string: what a commit links to, without pathlib's cost."""
        validate_key(key)
        # Two levels of fan-out keep directories small with millions of objects. Short keys
        # are padded so every object sits exactly three levels down, never where a fan-out
        # directory must go (key "ab" at ab/ab would block "abab…" at ab/ab/abab…).
        # The same digits new keys share in a run (keys.py), so a run fills one directory.
        fan = key.ljust(PREFIX_DIGITS, "_")
        return os.path.join(self._root, fan[:2], fan[2:PREFIX_DIGITS], key)

    async def open_writer(self, key: str) -> LocalBlobWriter:
        validate_key(key)
        return LocalBlobWriter(self, key)

    def make_unnamed_file(self) -> int | None:
        """A new file with no name yet (O_TMPFILE, 0600) in the temp directory, or None
        where the file system or kernel has none. Nothing is left if the process dies
        before it is linked, and no lock is needed to keep gc off it."""
        if not self._unnamed_files:
            return None
        flags = os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC
        try:
            return self._in_tmp_dir(lambda: os.open(self.tmp_dir, flags, 0o600))
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
        self._unnamed_files = False
        return None

    def make_temp_file(self) -> tuple[Path, int]:
        """A new temp file (blocking): its path and an fd holding its lock."""
        tmp_path = self.tmp_dir / f"{uuid4_hex()}.part"
        # O_EXCL: created here or an error, never an existing file; 0600, locked.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        return tmp_path, self._in_tmp_dir(lambda: _private_locked(str(tmp_path), flags))

    def _in_tmp_dir(self, make: Callable[[], T]) -> T:
        """`make` a file in the temp directory, making the directory first if it is gone."""
        try:
            return make()
        except FileNotFoundError:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            return make()

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
            await _in_thread(_unlink_if_present, path)

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
