"""What only the local-disk backend promises: files, paths, modes, temp-file hygiene."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import threading
from pathlib import Path

import pytest
from aiofiles.threadpool.binary import AsyncFileIO

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
    async def disk_full(file: AsyncFileIO, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    writer = await storage.open_writer(KEY)
    await writer.write(b"first chunk")
    monkeypatch.setattr(local, "_write_all", disk_full)

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
    real_write_all = local._write_all

    async def slow_write_all(file: AsyncFileIO, data: bytes) -> None:
        fd = file.fileno()
        inode = os.fstat(fd).st_ino
        started.set()
        await asyncio.to_thread(release.wait, 5)
        try:
            still_our_file.append(os.fstat(fd).st_ino == inode)
            await real_write_all(file, data)
        finally:
            finished.set()

    monkeypatch.setattr(local, "_write_all", slow_write_all)
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


async def test_cancelled_commit_leaves_nothing(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cancelled after the link made the object visible: the caller sees a failure, so the
    # object must go too.
    started, release = threading.Event(), threading.Event()
    real_fsync_dir = local._fsync_dir
    final = storage.local_path(KEY)

    def slow_fsync_dir(path: Path) -> None:
        if path == final.parent:
            started.set()
            release.wait(5)
        real_fsync_dir(path)

    monkeypatch.setattr(local, "_fsync_dir", slow_fsync_dir)
    writer = await storage.open_writer(KEY)
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
    with pytest.raises(StorageError):
        await storage.open_writer(KEY)


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
