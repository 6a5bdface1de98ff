"""`filesvc upload`: each file through tus, resumable across runs.

    local file ──read a chunk (16 MiB)──▶ its SHA-256 (Upload-Checksum)
        │                                  │
        │                   PATCH at the server's offset, in 1 MiB slices (the bar)
        │                                  │
        └──▶ SHA-256 of the whole file ◀───┘  compared with the stored file's at the end

The upload URL is kept in the state dir under (server, path, size, mtime) as soon as the
upload is created, so a run that was killed or lost its network is picked up by the next
run from `HEAD`'s offset: only bytes the server does not have are sent again. Within a
run, a failed PATCH is retried (after a pause, from a fresh `HEAD`) a few times.
"""

from __future__ import annotations

import hashlib
import mimetypes
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from filesvc.client.config import Target
from filesvc.client.errors import ClientError, FileError, error_from_response
from filesvc.client.http import RateLimit, network_errors
from filesvc.client.progress import Bar, Display, human
from filesvc.client.state import ResumeState, UploadKey
from filesvc.client.tus import (
    CHECKSUM_MISMATCH,
    Finished,
    TusClient,
    UploadGone,
    sha256_checksum,
)

MiB = 1024 * 1024
SLICE_BYTES = MiB
# Worth another try after a HEAD: a conflict with another writer of the same upload, a
# chunk damaged on the way, a server restarting or overloaded.
RETRY_STATUSES = {409, 423, CHECKSUM_MISMATCH, 500, 502, 503, 504}
MAX_FAILURES = 6  # in a row; the pauses between them: 1, 2, 4, 8, 16 s


@dataclass(frozen=True)
class UploadOptions:
    visibility: str | None = None
    chunk_bytes: int = 16 * MiB
    limit_rate: int | None = None  # bytes a second


@dataclass(frozen=True)
class Uploaded:
    file_id: str
    sent: int  # bytes sent by this run


class WholeFileDigest:
    """The SHA-256 of the local file, fed by the chunks as they are read; what was skipped
    (the part an earlier run stored) is read from the file when it is needed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digest = hashlib.sha256()
        self.done = 0

    def feed(self, start: int, pieces: list[bytes]) -> None:
        if start > self.done:
            self._read_up_to(start)
        position = start
        for piece in pieces:
            end = position + len(piece)
            if end > self.done:
                self.digest.update(piece[self.done - position :])
                self.done = end
            position = end

    def hexdigest(self, size: int) -> str:
        self._read_up_to(size)
        return self.digest.hexdigest()

    def _read_up_to(self, end: int) -> None:
        with self.path.open("rb") as f:
            f.seek(self.done)
            while self.done < end and (piece := f.read(min(SLICE_BYTES, end - self.done))):
                self.digest.update(piece)
                self.done += len(piece)


class Uploader:
    def __init__(
        self,
        client: httpx.Client,
        target: Target,
        state: ResumeState,
        display: Display,
        options: UploadOptions,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.sleep = sleep  # between retries
        self.server = target.server
        self.tus = TusClient(client)
        self.state = state
        self.display = display
        self.options = options

    def upload(self, path: Path) -> Uploaded:
        """Upload one file, or finish its earlier upload."""
        try:
            key = UploadKey.of(self.server, path)
        except OSError as exc:
            raise FileError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            return self._upload(path, key)
        except UploadGone:
            # Expired or removed on the server, between two runs or during this one.
            self.state.forget_upload(key)
            self.display.note(f"{path.name}: the server no longer has the upload; starting over")
        try:
            return self._upload(path, key)
        except UploadGone as exc:
            raise FileError(f"upload {path}: the server dropped the upload twice") from exc

    def _upload(self, path: Path, key: UploadKey) -> Uploaded:
        action = f"upload {path}"
        url, offset = self._resume(key, action)
        if url is None:
            url, stored = self._create(path, key, action)
            offset = 0
            if stored is not None:  # an empty file is stored on creation
                return self._finish(path, key, stored, WholeFileDigest(path), 0, action)
        else:
            self.display.note(
                f"{path.name}: resuming at byte {offset} of {key.size} "
                f"({human(offset)} already stored)"
            )
        digest = WholeFileDigest(path)
        try:
            with path.open("rb") as f, ThreadPoolExecutor(1, "filesvc-sha256") as hasher:
                finished, sent = self._transfer(
                    f, path, url, offset, key.size, digest, hasher, action
                )
        except OSError as exc:
            raise FileError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return self._finish(path, key, finished, digest, sent, action)

    def _finish(
        self,
        path: Path,
        key: UploadKey,
        finished: Finished,
        digest: WholeFileDigest,
        sent: int,
        action: str,
    ) -> Uploaded:
        self.state.forget_upload(key)
        try:
            local_sha256 = digest.hexdigest(key.size)
        except OSError as exc:
            raise FileError(f"cannot read {path}: {exc.strerror or exc}") from exc
        self._verify(finished, local_sha256, action)
        self.display.note(
            f"{path.name}: stored as {finished.file_id} ({key.size} bytes, SHA-256 checked; "
            f"{sent} bytes sent by this run)"
        )
        return Uploaded(finished.file_id, sent)

    def _resume(self, key: UploadKey, action: str) -> tuple[str | None, int]:
        """The remembered upload and the server's offset, if it is still there."""
        url = self.state.upload_url(key)
        if url is None:
            return None, 0
        with network_errors(self.server):
            try:
                offset, length = self.tus.head(url)
            except UploadGone:
                self.state.forget_upload(key)
                return None, 0
            except httpx.HTTPStatusError as exc:
                raise error_from_response(exc.response, action, self.server) from exc
        if length not in (None, key.size) or offset > key.size:
            self.state.forget_upload(key)
            return None, 0
        return url, offset

    def _create(self, path: Path, key: UploadKey, action: str) -> tuple[str, Finished | None]:
        metadata = {"filename": path.name}
        guessed, _ = mimetypes.guess_type(path.name)
        if guessed:
            metadata["filetype"] = guessed
        if self.options.visibility:
            metadata["visibility"] = self.options.visibility
        with network_errors(self.server):
            response = self.tus.create(key.size, metadata)
        if response.status_code == 404:
            raise ClientError(f"{self.server} does not take resumable (tus) uploads: it is too old")
        if response.status_code != 201:
            raise error_from_response(response, action, self.server)
        url = TusClient.location(response)
        stored = TusClient.finished(response)
        if stored is None:
            self.state.remember_upload(key, url)  # before the first byte, so a kill can resume
        return url, stored

    def _transfer(
        self,
        f: BinaryIO,
        path: Path,
        url: str,
        offset: int,
        size: int,
        digest: WholeFileDigest,
        hasher: ThreadPoolExecutor,
        action: str,
    ) -> tuple[Finished, int]:
        """PATCH chunk after chunk from `offset` until the server says the file is stored."""
        bar = self.display.bar(path.name, size, offset)
        limit = RateLimit(self.options.limit_rate) if self.options.limit_rate else None
        known: int | None = offset
        sent = failures = 0
        last_problem = ""
        while True:
            if known is None:  # after a failure: ask the server where to go on from
                known = self._head_offset(url, action)
                if known is not None:
                    bar.set(known)
            if known is not None:
                pieces = self._read_chunk(f, path, known, size)
                # The whole file's hash is taken in a thread while the chunk is on its way
                # (hashlib lets go of the GIL): it costs no time on a machine with 2 cores.
                hashing = hasher.submit(digest.feed, known, pieces)
                length = sum(map(len, pieces))
                response: httpx.Response | None = None
                try:
                    response = self.tus.patch(
                        url, known, self._body(pieces, bar, limit), length, sha256_checksum(pieces)
                    )
                except httpx.TransportError as exc:
                    last_problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
                finally:
                    hashing.result()
                if response is not None:
                    if response.status_code in (404, 410):
                        raise UploadGone(url)
                    if response.status_code == 204:
                        sent += length
                        patched = TusClient.patched(response)
                        if patched.finished is not None:
                            bar.set(size)
                            return patched.finished, sent
                        if patched.offset >= size:
                            raise FileError(f"{action}: the server has every byte but no file")
                        failures = 0 if patched.offset > known else failures + 1
                        known = patched.offset
                        bar.set(known)
                        if failures < MAX_FAILURES:
                            continue
                        raise FileError(f"{action}: the server's offset stays at {known}")
                    if response.status_code not in RETRY_STATUSES:
                        raise error_from_response(response, action, self.server)
                    last_problem = f"the server answered {response.status_code}"
            failures += 1
            if failures >= MAX_FAILURES:
                raise ClientError(f"{action}: gave up after {failures} attempts ({last_problem})")
            pause = 2 ** (failures - 1)
            self.display.note(f"{path.name}: {last_problem}; trying again in {pause} s")
            self.sleep(pause)
            known = None

    def _head_offset(self, url: str, action: str) -> int | None:
        try:
            offset, _length = self.tus.head(url)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code in RETRY_STATUSES:
                return None
            raise error_from_response(exc.response, action, self.server) from exc
        except httpx.TransportError:
            return None
        return offset

    @staticmethod
    def _body(pieces: list[bytes], bar: Bar, limit: RateLimit | None) -> Iterator[bytes]:
        for piece in pieces:
            if limit is not None:
                limit.take(len(piece))
            yield piece
            bar.advance(len(piece))

    def _read_chunk(self, f: BinaryIO, path: Path, offset: int, size: int) -> list[bytes]:
        """The chunk from `offset`, in slices; an empty list at the end of the file."""
        end = min(size, offset + self.options.chunk_bytes)
        pieces: list[bytes] = []
        f.seek(offset)
        position = offset
        while position < end:
            piece = f.read(min(SLICE_BYTES, end - position))
            if not piece:
                raise FileError(f"upload {path}: the file got shorter while it was uploading")
            pieces.append(piece)
            position += len(piece)
        return pieces

    def _verify(self, finished: Finished, local_sha256: str, action: str) -> None:
        """The stored file's SHA-256 must be the local file's."""
        location = finished.file_location or f"files/{finished.file_id}"
        with network_errors(self.server):
            response = self.client.get(location)
        if response.status_code != 200:
            raise error_from_response(response, f"{action}: checking the stored file", self.server)
        stored = response.json().get("sha256")
        if stored != local_sha256:
            raise FileError(
                f"{action}: the stored file {finished.file_id} has SHA-256 {stored}, the local "
                f"file {local_sha256}; did the file change while it was uploading?"
            )
