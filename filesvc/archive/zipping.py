"""Zip archives of stored files, streamed while they are built: no temp file, flat memory.

zipstream-ng does the zip framing (stored members, data descriptors, zip64 when needed)
and knows the archive's length in advance. It pulls member data synchronously, so it
runs in threads of its own, and each member's data is a blocking iterator that asks the
event loop for the next chunk of the blob:

    storage.get() chunks (event loop) → _BlobChunks (zip thread) → ZipStream (zip thread,
    CRC-32) → ZipArchive.stream() (event loop) → the response

The zip threads wait on storage reads that use the default thread pool, so they must
never come from that pool themselves: a burst of archives would then deadlock it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from zipstream import ZIP_STORED, ZipStream

from filesvc.storage.base import GetResult, Storage

# Archives streaming at once, each holding a thread only while it makes one chunk;
# more simply take turns.
T = TypeVar("T")

_zip_pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="zip")


@dataclass(frozen=True, slots=True)
class Member:
    key: str
    name: str
    size: int


def member_names(names: Iterable[str]) -> list[str]:
    """Names safe to extract (no directories, no `..`) and unique the way file systems
    compare them (case-insensitively): `a.txt`, `a (1).txt`, …"""
    taken: set[str] = set()
    unique: list[str] = []
    for raw in names:
        name = raw.replace("/", "_").replace("\\", "_")
        if name.strip(".") == "":
            name = "_" + name
        stem, dot, ext = name.rpartition(".")
        if not stem:  # no extension, or a dot file such as `.env`
            stem, dot, ext = name, "", ""
        candidate, n = name, 0
        while candidate.casefold() in taken:
            n += 1
            candidate = f"{stem} ({n}){dot}{ext}"
        taken.add(candidate.casefold())
        unique.append(candidate)
    return unique


async def _next_chunk(result: GetResult) -> bytes | None:
    return await anext(result.chunks, None)


class _BlobChunks:
    """One blob's bytes as a blocking iterator, for the zip thread."""

    def __init__(self, storage: Storage, key: str, loop: asyncio.AbstractEventLoop) -> None:
        self._storage = storage
        self._key = key
        self._loop = loop

    def __iter__(self) -> Iterator[bytes]:
        result = self._on_loop(self._storage.get(self._key))
        try:
            while (chunk := self._on_loop(_next_chunk(result))) is not None:
                yield chunk
        finally:
            self._on_loop(result.aclose())

    def _on_loop(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()


class ZipArchive:
    def __init__(self, storage: Storage, members: Iterable[Member]) -> None:
        loop = asyncio.get_running_loop()
        self._zip = ZipStream(compress_type=ZIP_STORED, sized=True)
        for member in members:
            self._zip.add(_BlobChunks(storage, member.key, loop), member.name, size=member.size)

    def __len__(self) -> int:
        return len(self._zip)

    async def stream(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        chunks = iter(self._zip)
        pending: asyncio.Future[bytes | None] | None = None
        try:
            while True:
                pending = loop.run_in_executor(_zip_pool, next, chunks, None)
                chunk = await pending
                pending = None
                if chunk is None:
                    return
                yield chunk
        finally:
            # A generator cannot be closed while a thread runs it: let that chunk finish.
            if pending is not None:
                await asyncio.shield(asyncio.wait([pending]))
            await asyncio.shield(loop.run_in_executor(_zip_pool, chunks.close))
