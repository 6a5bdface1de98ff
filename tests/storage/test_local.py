"""What only the local-disk backend promises: files, paths, modes, temp-file hygiene."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from filesvc.storage import local
from filesvc.storage.base import InvalidKey, LocalPaths, ObjectNotFound, StorageError
from filesvc.storage.local import LocalStorage

KEY = "3f2a9c4e-1b7d-4c1e-9a55-0d3c2b1a0f9e"


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "blobs")


def temp_files(storage: LocalStorage) -> list[str]:
    return sorted(os.listdir(storage.tmp_dir)) if storage.tmp_dir.exists() else []


def all_files(storage: LocalStorage) -> list[Path]:
    return sorted(p for p in storage.root.rglob("*") if p.is_file())


async def test_temp_file_lives_in_tmp_until_commit(storage: LocalStorage) -> None:
    writer = await storage.open_writer(KEY)
    await writer.write(b"abc")

    [name] = temp_files(storage)
    assert (storage.tmp_dir / name).read_bytes() == b"abc"
    assert not storage.local_path(KEY).exists()

    await writer.commit()
    assert temp_files(storage) == []
    assert storage.local_path(KEY).read_bytes() == b"abc"


async def test_abort_removes_temp_file(storage: LocalStorage) -> None:
    writer = await storage.open_writer(KEY)
    await writer.write(b"abc")
    await writer.abort()

    assert temp_files(storage) == []
    assert all_files(storage) == []


async def test_failed_write_is_a_storage_error_and_abort_cleans_up(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(fd: int, chunks: Sequence[bytes]) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    writer = await storage.open_writer(KEY)
    await writer.write(b"first chunk")
    monkeypatch.setattr(local, "writev_all", disk_full)

    with pytest.raises(StorageError, match="No space left") as excinfo:
        await writer.write(b"second chunk")
    assert isinstance(excinfo.value.__cause__, OSError)
    await writer.abort()

    assert all_files(storage) == []


async def test_exception_in_the_producer_mid_write(storage: LocalStorage) -> None:
    async def upload() -> None:
        writer = await storage.open_writer(KEY)
        try:
            await writer.write(b"x" * 1000)
            raise ConnectionResetError("client went away")
        except BaseException:
            await writer.abort()
            raise

    with pytest.raises(ConnectionResetError):
        await upload()
    assert all_files(storage) == []


async def test_cancelled_write_keeps_its_fd_until_the_thread_is_done(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cancelling the await does not stop the worker thread in write(). If abort() closed
    # the fd under it, the next open() could get the same number and receive the bytes.
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    still_our_file: list[bool] = []
    real_writev_all = local.writev_all

    def slow_writev_all(fd: int, chunks: Sequence[bytes]) -> None:
        inode = os.fstat(fd).st_ino
        started.set()
        release.wait(5)
        try:
            still_our_file.append(os.fstat(fd).st_ino == inode)
            real_writev_all(fd, chunks)
        finally:
            finished.set()

    monkeypatch.setattr(local, "writev_all", slow_writev_all)
    writer = await storage.open_writer(KEY)

    async def upload() -> None:
        try:
            await writer.write(b"secret bytes")
            await writer.commit()
        except BaseException:
            await writer.abort()
            raise

    task = asyncio.create_task(upload())
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()
    await asyncio.sleep(0.05)  # upload() is in abort() now
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await asyncio.to_thread(finished.wait, 5)
    assert still_our_file == [True]
    assert all_files(storage) == []


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("inline", [False, True], ids=["write-then-commit", "small-commit"])
async def test_cancelled_commit_leaves_nothing(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch, inline: bool
) -> None:
    # Cancelled after the link made the object visible: the caller sees a failure, so the
    # object must go too. A small body committed at once is linked on the loop and only
    # its fsyncs run in the thread; the same holds.
    started, release = threading.Event(), threading.Event()
    real_fsync_dir = local._fsync_dir
    final = storage.local_path(KEY)

    def slow_fsync_dir(path: str | Path) -> None:
        if Path(path) == final.parent:
            started.set()
            release.wait(5)
        real_fsync_dir(path)

    monkeypatch.setattr(local, "_fsync_dir", slow_fsync_dir)
    fds = open_fds()
    writer = await storage.open_writer(KEY)
    if inline:
        task = asyncio.create_task(writer.commit_hashed([b"data"], hashlib.sha256(), None))
    else:
        await writer.write(b"data")
        task = asyncio.create_task(writer.commit())
    assert await asyncio.to_thread(started.wait, 5)
    assert final.exists()
    task.cancel()
    await asyncio.sleep(0.05)
    release.set()

    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ObjectNotFound):
        await storage.head(KEY)
    assert all_files(storage) == []
    assert open_fds() == fds


def test_path_is_under_the_root_and_derived_from_the_key(tmp_path: Path) -> None:
    a = LocalStorage(tmp_path / "a")
    b = LocalStorage(tmp_path / "b" / ".." / "b")

    assert isinstance(a, LocalPaths)
    assert a.local_path(KEY) == a.root / "3f" / "2a" / KEY
    assert b.local_path(KEY).relative_to(b.root) == a.local_path(KEY).relative_to(a.root)
    assert b.root == (tmp_path / "b").resolve()
    # Short keys are padded so every object sits three levels down.
    assert a.local_path("ab") == a.root / "ab" / "__" / "ab"
    assert a.local_path("a") == a.root / "a_" / "__" / "a"
    for key in ["../x", "a/b", "", ".hidden", "a\x00b", ".tmp"]:
        with pytest.raises(InvalidKey):
            a.local_path(key)


async def test_object_is_stored_at_its_path(storage: LocalStorage) -> None:
    for content in [b"one", b"two, different and longer"]:
        writer = await storage.open_writer(KEY)
        await writer.write(content)
        await writer.commit()
        assert all_files(storage) == [storage.local_path(KEY)]
        assert storage.local_path(KEY).read_bytes() == content
        await storage.delete(KEY)


async def test_files_are_private(storage: LocalStorage) -> None:
    writer = await storage.open_writer(KEY)
    await writer.write(b"abc")
    [name] = temp_files(storage)
    assert stat.S_IMODE((storage.tmp_dir / name).stat().st_mode) == 0o600
    await writer.commit()

    assert stat.S_IMODE(storage.local_path(KEY).stat().st_mode) == 0o600


async def test_check_fails_when_root_is_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    storage = LocalStorage(blocker / "blobs")

    with pytest.raises(StorageError, match="not writable"):
        await storage.check()
    writer = await storage.open_writer(KEY)  # the temp file is made by the first write
    with pytest.raises(StorageError):
        await writer.write(b"abc")
    await writer.abort()


async def test_check_creates_the_root(storage: LocalStorage) -> None:
    await storage.check()
    assert storage.root.is_dir()
    assert temp_files(storage) == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
async def test_get_closes_the_file(storage: LocalStorage) -> None:
    writer = await storage.open_writer(KEY)
    await writer.write(b"x" * 100)
    await writer.commit()
    before = len(os.listdir("/proc/self/fd"))

    unread = await storage.get(KEY)
    await unread.aclose()
    read = await storage.get(KEY)
    assert [chunk async for chunk in read.chunks] == [b"x" * 100]
    assert len(os.listdir("/proc/self/fd")) == before
    await read.aclose()


def open_paths() -> list[str]:
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue  # closed while we looked
    return paths


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
async def test_a_read_closed_by_a_cancelled_request_still_closes_the_file(
    storage: LocalStorage,
) -> None:
    writer = await storage.open_writer(KEY)
    await writer.write(b"x" * (3 * local.READ_CHUNK))
    await writer.commit()
    blob = str(storage.local_path(KEY).resolve())
    result = await storage.get(KEY)
    assert await anext(result.chunks)
    assert blob in open_paths()

    # A client gone: Starlette cancels the response's scope, and anyio cancels every
    # await inside it again, the clean-up's included.
    with anyio.CancelScope() as scope:
        scope.cancel()
        await result.aclose()

    deadline = asyncio.get_running_loop().time() + 10
    while blob in open_paths():
        assert asyncio.get_running_loop().time() < deadline, "the blob stayed open"
        await asyncio.sleep(0.01)


async def test_list_ignores_temp_and_stray_files(storage: LocalStorage) -> None:
    writer = await storage.open_writer(KEY)
    await writer.write(b"abc")
    await writer.commit()
    pending = await storage.open_writer("pending")
    await pending.write(b"abc")
    (storage.root / "stray").write_bytes(b"")
    (storage.root / "3f" / "stray").write_bytes(b"")

    assert [meta.key async for meta in storage.list()] == [KEY]
    await pending.abort()


async def test_hashing_writer_writes_every_chunk_in_order_through_short_writes(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More chunks than one writev takes, and a kernel that writes at most 7 bytes a call.
    chunks = [bytes([i % 251]) * (i % 13) for i in range(local.IOV_MAX * 2 + 5)]
    real_writev = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, views: real_writev(fd, [bytes(views[0])[:7]]))
    hasher = hashlib.sha256()
    writer = await storage.open_writer(KEY)
    await writer.write_hashed(chunks[:100], hasher)
    await writer.commit_hashed(chunks[100:], hasher, None)

    data = b"".join(chunks)
    assert storage.local_path(KEY).read_bytes() == data
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()


async def test_a_refused_digest_commits_nothing(storage: LocalStorage) -> None:
    class Refused(Exception):
        pass

    def refuse(digest: str) -> None:
        assert digest == hashlib.sha256(b"abcdef").hexdigest()
        raise Refused()

    hasher = hashlib.sha256()
    writer = await storage.open_writer(KEY)
    await writer.write_hashed([b"abc"], hasher)
    with pytest.raises(Refused):
        await writer.commit_hashed([b"d", b"ef"], hasher, refuse)

    assert all_files(storage) == []
    with pytest.raises(StorageError, match="closed"):
        await writer.write(b"more")


def record_threads(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """The threads each of a commit's writes and fsyncs ran in."""
    seen: dict[str, set[str]] = {"writev": set(), "fsync": set()}
    real_writev_all, real_fsync = local.writev_all, os.fsync

    def writev_all(fd: int, chunks: Sequence[bytes]) -> None:
        seen["writev"].add(threading.current_thread().name)
        real_writev_all(fd, chunks)

    def fsync(fd: int) -> None:
        seen["fsync"].add(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(local, "writev_all", writev_all)
    monkeypatch.setattr(os, "fsync", fsync)
    return seen


async def test_a_small_body_is_written_on_the_loop_and_made_durable_in_a_thread(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.current_thread().name
    seen = record_threads(monkeypatch)
    small = os.urandom(local.INLINE_BYTES)
    writer = await storage.open_writer(KEY)
    await writer.commit_hashed([small[:100], small[100:]], hashlib.sha256(), None)

    assert seen["writev"] == {loop_thread}
    assert seen["fsync"]
    assert loop_thread not in seen["fsync"]
    assert storage.local_path(KEY).read_bytes() == small
    assert temp_files(storage) == []

    # One byte more, or bytes written before the commit: all of it in the disk threads.
    for first, rest in ([], [small + b"x"]), ([small[:10]], [small[10:]]):
        seen["writev"].clear()
        writer = await storage.open_writer(f"{KEY}-{len(first)}")
        if first:
            await writer.write_hashed(first, hashlib.sha256())
        await writer.commit_hashed(rest, hashlib.sha256(), None)
        assert seen["writev"]
        assert loop_thread not in seen["writev"]


async def test_a_small_body_with_a_refused_digest_leaves_nothing(storage: LocalStorage) -> None:
    class Refused(Exception):
        pass

    def refuse(digest: str) -> None:
        raise Refused()

    fds = open_fds()
    writer = await storage.open_writer(KEY)
    with pytest.raises(Refused):
        await writer.commit_hashed([b"small"], hashlib.sha256(), refuse)
    assert all_files(storage) == []
    assert temp_files(storage) == []
    assert open_fds() == fds


def record_opens(monkeypatch: pytest.MonkeyPatch, refuse_unnamed: bool = False) -> list[int]:
    """The flags of every os.open; with `refuse_unnamed`, O_TMPFILE fails as on a file
    system without it."""
    flags_seen: list[int] = []
    real_open = os.open

    def recording(path: str, flags: int, mode: int = 0o777, **kwargs: int) -> int:
        flags_seen.append(flags)
        if refuse_unnamed and flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", recording)
    return flags_seen


def unnamed(flags_seen: list[int]) -> list[int]:
    return [flags for flags in flags_seen if flags & os.O_TMPFILE == os.O_TMPFILE]


@pytest.mark.parametrize(
    "chunks",
    [[b"small"], [os.urandom(256 * 1024) for _ in range(4)]],
    ids=["small-on-the-loop", "one-mib-in-a-thread"],
)
async def test_a_body_committed_whole_never_gives_its_file_a_temp_name(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch, chunks: list[bytes]
) -> None:
    # An unnamed file (O_TMPFILE) linked into place: if the process dies before, nothing
    # is left for gc, and there is no temp name to create, lock and unlink.
    await storage.check()  # makes the temp directory
    flags_seen = record_opens(monkeypatch)
    writer = await storage.open_writer(KEY)
    await writer.commit_hashed(chunks, hashlib.sha256(), None)

    assert len(unnamed(flags_seen)) == 1
    assert not [flags for flags in flags_seen if flags & os.O_CREAT]
    path = storage.local_path(KEY)
    assert path.read_bytes() == b"".join(chunks)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_nlink == 1
    assert temp_files(storage) == []


async def test_without_unnamed_files_a_small_commit_takes_a_temp_name(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    await storage.check()
    flags_seen = record_opens(monkeypatch, refuse_unnamed=True)
    for key in (KEY, f"{KEY}-2"):
        writer = await storage.open_writer(key)
        await writer.commit_hashed([key.encode()], hashlib.sha256(), None)
        assert storage.local_path(key).read_bytes() == key.encode()

    assert len(unnamed(flags_seen)) == 1  # tried once, then no more
    assert len([flags for flags in flags_seen if flags & os.O_CREAT]) == 2
    assert temp_files(storage) == []


async def test_gc_can_tell_a_crashed_write_from_one_in_flight(tmp_path: Path) -> None:
    """A writer locks its temp file until the object is linked; a temp file left by a
    crash has no lock, so it can be discarded."""
    storage = LocalStorage(tmp_path / "blobs")
    writer = await storage.open_writer("alive")
    await writer.write(b"still arriving")
    (storage.tmp_dir / "crashed.part").write_bytes(b"left behind")

    pending = {p.id: p async for p in storage.pending_writes()}
    assert len(pending) == 2
    crashed = pending.pop("crashed.part")
    [alive] = pending.values()
    assert crashed.key is None
    assert crashed.size == len(b"left behind")

    assert await storage.discard_pending(crashed) is True
    assert await storage.discard_pending(alive) is False
    assert [p.id async for p in storage.pending_writes()] == [alive.id]
    await writer.commit()
    assert [p async for p in storage.pending_writes()] == []
    assert storage.local_path("alive").read_bytes() == b"still arriving"


async def test_a_writer_makes_no_temp_file_before_its_first_job(storage: LocalStorage) -> None:
    writer = await storage.open_writer(KEY)
    assert temp_files(storage) == []
    await writer.abort()
    assert temp_files(storage) == []

    small = await storage.open_writer(KEY)
    await small.commit_hashed([b"small"], hashlib.sha256(), None)  # create to link: one job
    assert storage.local_path(KEY).read_bytes() == b"small"
    assert temp_files(storage) == []


def fsynced_dirs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    synced: list[Path] = []
    real = local._fsync_dir

    def recording(path: str | Path) -> None:
        synced.append(Path(path))
        real(path)

    monkeypatch.setattr(local, "_fsync_dir", recording)
    return synced


async def put(storage: LocalStorage, key: str, data: bytes) -> None:
    writer = await storage.open_writer(key)
    await writer.write(data)
    await writer.commit()


async def test_a_new_fan_out_directory_is_made_durable_once_known_or_not(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    await storage.check()
    synced = fsynced_dirs(monkeypatch)
    first, second = "abcd-1", "abcd-2"  # one fan-out directory
    top, leaf = storage.root / "ab", storage.root / "ab" / "cd"

    await put(storage, first, b"1")
    # The directory holding the new link, then each new directory's parent (after the
    # blob's own fsync, which commits all these names with it on a journaling fs).
    assert synced == [leaf, top, storage.root]

    synced.clear()
    await put(storage, second, b"2")  # known now: only the link is made durable
    assert synced == [leaf]

    # Removed behind the writer's back: made again, with its parents' fsyncs.
    await storage.delete(first)
    await storage.delete(second)
    leaf.rmdir()
    synced.clear()
    await put(storage, first, b"again")
    assert storage.local_path(first).read_bytes() == b"again"
    assert synced == [leaf, top, storage.root]


class _RecordingHasher:
    """A SHA-256 that notes the threads it ran in."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.threads: set[str] = set()

    def update(self, data: bytes) -> None:
        self.threads.add(threading.current_thread().name)
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


async def test_a_batch_is_hashed_beside_its_write_and_whole_when_the_write_returns(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = record_threads(monkeypatch)
    hasher = _RecordingHasher()
    chunks = [os.urandom(64 * 1024) for _ in range(16)]
    writer = await storage.open_writer(KEY)
    await writer.write_hashed(chunks, hasher)

    assert hasher.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert hasher.threads
    assert seen["writev"]
    assert hasher.threads.isdisjoint(seen["writev"])
    await writer.commit_hashed([], hasher, None)
    assert storage.local_path(KEY).read_bytes() == b"".join(chunks)


async def test_a_failed_batch_write_waits_for_its_hash(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed = threading.Event()

    class SlowHasher(_RecordingHasher):
        def update(self, data: bytes) -> None:
            time.sleep(0.2)  # still hashing long after the write failed
            super().update(data)
            hashed.set()

    def fail(fd: int, chunks: Sequence[bytes]) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(local, "writev_all", fail)
    writer = await storage.open_writer(KEY)
    with pytest.raises(StorageError):
        await writer.write_hashed([b"abc"], SlowHasher())
    # The hasher is the caller's again: nothing still runs on it.
    assert hashed.is_set()
    await writer.abort()
    assert temp_files(storage) == []
