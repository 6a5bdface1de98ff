"""Where an unfinished upload's bytes live, per backend: the capabilities the service uses.

A chunk is written through a `ChunkWriter` opened at the upload's recorded offset. Its
bytes count only once `keep` has made them durable and the new offset is committed to the
database; `discard` drops them (checksum mismatch, body cut off, lease lost). `finish`
turns a complete upload into an ordinary blob under a storage key; `remove` deletes the
bytes of an upload that will never finish.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from filesvc.storage.base import Hasher, Storage
from filesvc.tus.models import TusUpload

StorageState = dict[str, Any]


class ChunkWriter(Protocol):
    async def write(self, chunks: Sequence[bytes], hashes: Sequence[Hasher]) -> None:
        """The next bytes, as the chunks they came in (one batch of about 1 MiB), and each
        of `hashes` updated with them before this returns."""
        ...

    async def keep(self, *, final: bool) -> StorageState:
        """Make every byte written durable; the upload's new storage state to commit."""
        ...

    async def discard(self) -> None:
        """Forget this chunk: the upload stays as it was at its recorded offset."""
        ...

    async def settled(self) -> None:
        """After the new state committed: drop what it no longer refers to."""
        ...


class PartialStore(Protocol):
    async def open_chunk(self, upload: TusUpload) -> ChunkWriter:
        """Open for writing at `upload.offset`; bytes past it (a crash mid-chunk) are dropped."""
        ...

    async def finish(self, upload: TusUpload) -> str:
        """Make the complete upload a blob and return its storage key (no row points at it
        yet: the caller removes it if its row does not commit)."""
        ...

    async def finished(self, upload: TusUpload) -> None:
        """After the File row committed: remove what the upload kept besides the blob."""
        ...

    async def remove(self, upload: TusUpload) -> None:
        """Delete everything an unfinished upload stored; safe to repeat."""
        ...


def build_partial_store(storage: Storage) -> PartialStore:
    from filesvc.storage.local import LocalStorage

    if isinstance(storage, LocalStorage):
        from filesvc.tus.local import LocalPartials

        return LocalPartials(storage)
    from filesvc.storage.s3 import S3Storage

    if isinstance(storage, S3Storage):
        from filesvc.tus.s3 import S3Partials

        return S3Partials(storage)
    raise TypeError(f"tus uploads are not supported on the {storage.name!r} backend")
