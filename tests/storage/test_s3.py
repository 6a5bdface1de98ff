"""What only the S3 backend promises: PutObject or multipart by size, parts in flight
bounded, failed and cancelled uploads aborted, clear check() errors, presigned URLs.
All against the session's real SeaweedFS."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import EndpointConnectionError

from filesvc.storage.base import ObjectAlreadyExists, ObjectNotFound, StorageError
from filesvc.storage.s3 import S3Storage
from filesvc.storage.s3_upload import MAX_PARTS, PARTS_IN_FLIGHT, part_size_for
from tests.seaweedfs import SeaweedFS, pending_uploads, stored_keys
from tests.storage.conftest import s3_storage

MiB = 1024 * 1024
GiB = 1024 * MiB
PART = 5 * MiB


@pytest.fixture
async def storage(seaweedfs: SeaweedFS, s3_bucket: str) -> AsyncIterator[S3Storage]:
    backend = s3_storage(seaweedfs, s3_bucket)
    yield backend
    await backend.aclose()


class Calls:
    """Counts the backend's S3 operations through botocore's event hooks."""

    def __init__(self, storage: S3Storage) -> None:
        self.names: list[str] = []
        self._lock = threading.Lock()
        storage.calls.client.meta.events.register("before-call.s3", self._before)

    def _before(self, event_name: str, **_: Any) -> None:
        with self._lock:
            self.names.append(event_name.rsplit(".", 1)[-1])

    def count(self, name: str) -> int:
        return self.names.count(name)


def remains(seaweedfs: SeaweedFS, bucket: str) -> tuple[list[str], list[str]]:
    client = seaweedfs.client()
    return stored_keys(client, bucket), pending_uploads(client, bucket)


async def write_all(storage: S3Storage, key: str, data: bytes, chunk: int = MiB) -> None:
    writer = await storage.open_writer(key)
    try:
        for i in range(0, len(data), chunk):
            await writer.write(data[i : i + chunk])
        await writer.commit()
    except BaseException:
        await writer.abort()
        raise


async def read_all(storage: S3Storage, key: str) -> bytes:
    result = await storage.get(key)
    try:
        return b"".join([chunk async for chunk in result.chunks])
    finally:
        await result.aclose()


@pytest.mark.parametrize(
    ("size", "parts"),
    [
        pytest.param(0, 0, id="0B"),
        pytest.param(1, 0, id="1B"),
        pytest.param(PART - 1, 0, id="5MiB-1"),
        pytest.param(PART, 1, id="5MiB"),
        pytest.param(PART + 1, 2, id="5MiB+1"),
        pytest.param(3 * PART + 123, 4, id="15MiB+123"),
    ],
)
async def test_put_or_multipart_by_size(
    storage: S3Storage, seaweedfs: SeaweedFS, s3_bucket: str, size: int, parts: int
) -> None:
    data = os.urandom(size)
    calls = Calls(storage)

    await write_all(storage, "blob", data)

    assert calls.count("PutObject") == (1 if parts == 0 else 0)
    assert calls.count("UploadPart") == parts
    assert calls.count("CompleteMultipartUpload") == (1 if parts else 0)
    assert (await storage.head("blob")).size == size
    assert hashlib.sha256(await read_all(storage, "blob")).digest() == hashlib.sha256(data).digest()
    assert remains(seaweedfs, s3_bucket) == (["blob"], [])


async def test_one_big_write_is_cut_into_parts(storage: S3Storage) -> None:
    data = os.urandom(3 * PART + 5)
    calls = Calls(storage)

    await write_all(storage, "cut", data, chunk=len(data))

    assert calls.count("UploadPart") == 4  # three full parts and the 5 bytes left
    assert await read_all(storage, "cut") == data


async def test_parts_in_flight_are_bounded_and_overlap_receiving(storage: S3Storage) -> None:
    in_flight, peak = 0, 0
    lock = threading.Lock()
    release = threading.Event()

    def before(**_: Any) -> None:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        release.wait(10)

    def after(**_: Any) -> None:
        nonlocal in_flight
        with lock:
            in_flight -= 1

    events = storage.calls.client.meta.events
    events.register("before-call.s3.UploadPart", before)
    events.register("after-call.s3.UploadPart", after)
    writer = await storage.open_writer("bounded")
    chunk = os.urandom(MiB)

    # While the store holds every part, the writer keeps taking bytes until the limit.
    async def write_parts() -> None:
        for _ in range(PARTS_IN_FLIGHT * 5):
            await writer.write(chunk)

    await asyncio.wait_for(write_parts(), 10)  # PARTS_IN_FLIGHT parts in flight, not blocked
    blocked = asyncio.create_task(writer.write(chunk * 5))
    await asyncio.sleep(0.3)
    assert not blocked.done(), "a part beyond the limit was accepted"
    release.set()
    await blocked
    await writer.commit()
    assert peak == PARTS_IN_FLIGHT


async def test_a_failed_part_aborts_the_upload(
    storage: S3Storage, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    calls = Calls(storage)
    failed = False

    def fail_second_part(params: dict[str, Any], **_: Any) -> None:  # the API parameters
        nonlocal failed
        if params.get("PartNumber") == 2 and not failed:
            failed = True
            raise EndpointConnectionError(endpoint_url="http://s3.invalid")

    events = storage.calls.client.meta.events
    events.register("before-parameter-build.s3.UploadPart", fail_second_part)

    with pytest.raises(StorageError, match="part 2") as excinfo:
        await write_all(storage, "doomed", os.urandom(4 * PART))
    assert not isinstance(excinfo.value, ObjectNotFound)
    assert calls.count("AbortMultipartUpload") == 1
    assert remains(seaweedfs, s3_bucket) == ([], [])


async def test_create_only_holds_for_multipart(
    storage: S3Storage, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    first, second = os.urandom(PART + 10), os.urandom(2 * PART + 10)
    await write_all(storage, "taken", first)

    with pytest.raises(ObjectAlreadyExists):
        await write_all(storage, "taken", second)
    assert await read_all(storage, "taken") == first
    assert remains(seaweedfs, s3_bucket) == (["taken"], [])


@pytest.mark.parametrize("stage", ["write", "commit"])
async def test_cancelled_upload_leaves_nothing(
    storage: S3Storage, seaweedfs: SeaweedFS, s3_bucket: str, stage: str
) -> None:
    started, release = threading.Event(), threading.Event()
    operation = "UploadPart" if stage == "write" else "CompleteMultipartUpload"

    def slow(**_: Any) -> None:
        started.set()
        release.wait(10)

    storage.calls.client.meta.events.register(f"before-call.s3.{operation}", slow)
    writer = await storage.open_writer("cancelled")

    async def upload() -> None:
        try:
            await writer.write(os.urandom(PART * (PARTS_IN_FLIGHT + 1)))
            await writer.commit()
        except BaseException:
            await writer.abort()
            raise

    task = asyncio.create_task(upload())
    assert await asyncio.to_thread(started.wait, 10)
    task.cancel()
    await asyncio.sleep(0.05)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await writer.abort()  # twice is fine
    assert remains(seaweedfs, s3_bucket) == ([], [])


def test_part_size_grows_so_10_gib_fits_in_10000_parts() -> None:
    total, part = 0, 0
    while total < 10 * GiB:
        part += 1
        total += part_size_for(PART, part)
    assert part < MAX_PARTS
    assert part_size_for(PART, 1) == PART
    assert part_size_for(PART, 1001) == 2 * PART


async def test_check_names_a_missing_bucket(seaweedfs: SeaweedFS) -> None:
    storage = s3_storage(seaweedfs, "no-such-bucket-here")
    try:
        with pytest.raises(StorageError, match="'no-such-bucket-here' does not exist"):
            await storage.check()
    finally:
        await storage.aclose()


async def test_check_names_bad_credentials(
    seaweedfs: SeaweedFS, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    storage = s3_storage(seaweedfs, s3_bucket)
    try:
        with pytest.raises(StorageError, match="denied: check the credentials") as excinfo:
            await storage.check()
        assert "wrong-secret" not in str(excinfo.value)
    finally:
        await storage.aclose()


async def test_check_names_an_unreachable_store(seaweedfs: SeaweedFS) -> None:
    storage = s3_storage(seaweedfs, "bucket", endpoint_url="http://127.0.0.1:9")
    try:
        with pytest.raises(StorageError, match=r"cannot reach S3 at http://127.0.0.1:9"):
            await storage.check()
    finally:
        await storage.aclose()


async def test_presigned_url_serves_the_object_with_its_disposition(storage: S3Storage) -> None:
    await write_all(storage, "shared", b"presigned bytes")
    disposition = "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"

    url = await storage.presigned_get_url(
        "shared", content_type="text/plain", disposition=disposition
    )

    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.content == b"presigned bytes"
    assert response.headers["content-disposition"] == disposition
    assert response.headers["content-type"] == "text/plain"
    query = httpx.URL(url).params
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == str(storage.calls.options.presign_expiry_seconds)
    assert query["response-content-disposition"] == disposition
    assert query["response-content-type"] == "text/plain"


@pytest.fixture
def no_threads_leak() -> Iterator[None]:
    before = {t.name for t in threading.enumerate()}
    yield
    leaked = {t.name for t in threading.enumerate()} - before
    assert not [name for name in leaked if name.startswith("filesvc-s3")]


async def test_calls_run_in_the_backend_pool_and_aclose_ends_it(
    seaweedfs: SeaweedFS, s3_bucket: str, no_threads_leak: None
) -> None:
    storage = s3_storage(seaweedfs, s3_bucket)
    names: list[str] = []
    storage.calls.client.meta.events.register(
        "before-call.s3", lambda **_: names.append(threading.current_thread().name)
    )
    await storage.check()
    await write_all(storage, "pooled", b"x")
    await storage.aclose()
    assert names
    assert all(name.startswith("filesvc-s3") for name in names)
