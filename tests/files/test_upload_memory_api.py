"""The bytes of an upload are freed when it ends, with their last reference, not left in
reference cycles for Python's cyclic GC. That collector runs by object counts, and its
oldest generation seldom: a burst of 512 uploads of 1 MiB left 260 MiB of chunks in such
cycles (a blob writer, its last thread job and the job's closure over the writer), and
the server's resident set stayed 450-580 MiB above its start (thread_jobs.py). Every
upload path, on both stacks (local disk, S3)."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Account
from tests.files.helpers import sha256

MIB = 1024 * 1024
LARGE = os.urandom(3 * MIB + 123)  # several 1 MiB batches, then a commit
SMALL = os.urandom(100 * 1024)  # one commit with the whole body
# Anything this big among the garbage is a chunk of an upload (or a batch of chunks).
CHUNK_FLOOR = 64 * 1024


def _bytes_left_to_the_cyclic_gc() -> int:
    """How many bytes, in objects of CHUNK_FLOOR or more, only a collection would free."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found: dict[int, int] = {}
        for garbage in gc.garbage:
            for referent in gc.get_referents(garbage):
                if isinstance(referent, bytes | bytearray) and len(referent) >= CHUNK_FLOOR:
                    found[id(referent)] = len(referent)
        return sum(found.values())
    finally:
        gc.garbage.clear()
        gc.set_debug(0)


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()  # what earlier tests left is not this test's
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_upload_bytes_are_freed_without_the_cyclic_gc(
    client: httpx.AsyncClient, editor: Account, no_cyclic_gc: None
) -> None:
    raw = "/api/v1/files/raw"
    answers = [
        await client.put(f"{raw}/large.bin", content=LARGE, headers=editor.headers),
        await client.put(f"{raw}/small.bin", content=SMALL, headers=editor.headers),
        await client.post(
            "/api/v1/files", files={"file": ("form.bin", LARGE)}, headers=editor.headers
        ),
        await client.post(
            "/api/v1/files/batch",
            files=[("file", ("a.bin", LARGE)), ("file", ("b.bin", SMALL))],
            headers=editor.headers,
        ),
    ]
    assert [answer.status_code for answer in answers] == [201] * 4, answers[-1].text
    replaced = await client.put(
        f"/api/v1/files/{answers[1].json()['id']}/content",
        content=LARGE,
        headers=editor.headers,
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["sha256"] == sha256(LARGE)

    assert _bytes_left_to_the_cyclic_gc() == 0
