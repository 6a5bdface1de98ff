"""`filesvc download`: one file to a local path, resumable with `--continue`.

The bytes go to `<path>.part` beside the target and are renamed over it only once they
are all there and their SHA-256 matches the file's ETag, so the target is never a
half-written or corrupt file. `--continue` appends to the `.part` (or to a short target
file, as `wget -c` does) with `Range: bytes=<have>-` and `If-Range: <ETag>`: if the file
changed on the server since, the server sends it whole and the download starts over.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import quote

import httpx

from filesvc.client.config import Target
from filesvc.client.errors import ClientError, FileError, UsageError, error_from_response
from filesvc.client.http import RateLimit, network_errors
from filesvc.client.names import safe_filename
from filesvc.client.progress import Display, human
from filesvc.client.state import PartialDownload, ResumeState

if TYPE_CHECKING:
    from _hashlib import HASH

MiB = 1024 * 1024
READ_BYTES = MiB
PART_SUFFIX = ".part"


@dataclass(frozen=True)
class RemoteFile:
    id: str
    name: str
    size: int
    sha256: str

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'


class _Restart(Exception):
    """The partial bytes cannot be trusted: download the whole file again."""


def _disk_error(path: Path, exc: OSError) -> FileError:
    return FileError(f"cannot write {path}: {exc.strerror or exc}")


def _sha256_of(path: Path, length: int) -> HASH:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while length > 0 and (piece := f.read(min(READ_BYTES, length))):
            digest.update(piece)
            length -= len(piece)
    return digest


class Downloader:
    def __init__(
        self,
        client: httpx.Client,
        target: Target,
        state: ResumeState,
        display: Display,
        limit_rate: int | None = None,
    ) -> None:
        self.client = client
        self.limit_rate = limit_rate
        self.server = target.server
        self.state = state
        self.display = display

    def download(self, file_id: str, output: Path | None, resume: bool) -> Path:
        remote = self._describe(file_id)
        path = self._target_path(remote, output, resume)
        remote = replace(remote, name=path.name)  # shown in notes and bars: local and clean
        partial = path.with_name(path.name + PART_SUFFIX)
        if resume and not partial.exists() and path.is_file():
            # A short file where the download was going (wget -c): continue it.
            try:
                os.replace(path, partial)
            except OSError as exc:
                raise _disk_error(partial, exc) from exc
        try:
            self._fetch(remote, partial, resume)
        except _Restart as restart:
            self.display.note(f"{path.name}: {restart}; downloading it again from the start")
            self._fetch(remote, partial, resume=False)
        try:
            os.replace(partial, path)
        except OSError as exc:
            raise _disk_error(path, exc) from exc
        self.state.forget_download(partial)
        return path

    def _describe(self, file_id: str) -> RemoteFile:
        action = f"download {file_id}"
        with network_errors(self.server):
            response = self.client.get(f"files/{quote(file_id, safe='')}")
        if response.status_code == 404:
            raise ClientError(
                f"{action}: no file {file_id} on {self.server} (or you may not read it)"
            )
        if response.status_code != 200:
            raise error_from_response(response, action, self.server)
        body = response.json()
        return RemoteFile(body["id"], body["name"], int(body["size"]), body["sha256"])

    @staticmethod
    def _target_path(remote: RemoteFile, output: Path | None, resume: bool) -> Path:
        name = safe_filename(remote.name, fallback=f"file-{safe_filename(remote.id, 'download')}")
        if output is not None and not output.is_dir():
            return output
        path = (output or Path.cwd()) / name
        if path.is_dir():
            raise UsageError(f"{path} is a folder")
        # A name that came from the server never replaces a file unasked.
        if path.exists() and not resume:
            raise UsageError(
                f"{path} exists: pass -o {path} to replace it, or --continue to complete it"
            )
        return path

    def _fetch(self, remote: RemoteFile, partial: Path, resume: bool) -> None:
        """Bring `partial` to the whole file, checked against its SHA-256."""
        have = partial.stat().st_size if resume and partial.is_file() else 0
        if have > remote.size:
            raise _Restart(f"{partial.name} is longer than the file on the server")
        if_range = remote.etag
        if have:
            recorded = self.state.partial_download(partial)
            if recorded is not None and (recorded.server, recorded.file_id) == (
                self.server,
                remote.id,
            ):
                if_range = recorded.etag  # what the partial bytes really came from
            self.display.note(f"{remote.name}: continuing at byte {have} of {remote.size}")
        try:
            digest = _sha256_of(partial, have) if have else hashlib.sha256()
        except OSError as exc:
            raise FileError(f"cannot read {partial}: {exc.strerror or exc}") from exc
        if have < remote.size or not have:
            digest = self._receive(remote, partial, have, if_range, digest)
        if digest.hexdigest() != remote.sha256:
            if have:
                raise _Restart("the bytes already there do not match the file on the server")
            partial.unlink(missing_ok=True)
            self.state.forget_download(partial)
            raise FileError(
                f"download {remote.id}: the bytes received do not match the file's SHA-256 "
                f"{remote.sha256}; nothing was kept"
            )

    def _receive(
        self, remote: RemoteFile, partial: Path, have: int, if_range: str, digest: HASH
    ) -> HASH:
        action = f"download {remote.id}"
        headers = {"Range": f"bytes={have}-", "If-Range": if_range} if have else {}
        url = f"files/{quote(remote.id, safe='')}/content"
        try:
            with network_errors(self.server), self.client.stream("GET", url, headers=headers) as r:
                if r.status_code == 200 and have:
                    self.display.note(f"{remote.name}: the file changed on the server")
                    have, digest = 0, hashlib.sha256()
                elif r.status_code == 206:
                    self._check_content_range(r, have, remote.size, action)
                elif r.status_code != 200:
                    raise error_from_response(r, action, self.server)
                etag = r.headers.get("etag", remote.etag)
                self.state.remember_download(partial, PartialDownload(self.server, remote.id, etag))
                try:
                    f = partial.open("ab" if have else "wb")
                except OSError as exc:
                    raise _disk_error(partial, exc) from exc
                with f:
                    self._write_body(r, f, partial, remote, have, digest)
        except ClientError as exc:
            if partial.exists() and partial.stat().st_size:
                exc.message += f" (run it again with --continue to resume from {partial})"
            raise
        return digest

    def _write_body(
        self,
        response: httpx.Response,
        f: BinaryIO,
        partial: Path,
        remote: RemoteFile,
        have: int,
        digest: HASH,
    ) -> None:
        bar = self.display.bar(remote.name, remote.size, have)
        limit = RateLimit(self.limit_rate) if self.limit_rate else None
        received = have
        for chunk in response.iter_bytes(READ_BYTES):
            if limit is not None:
                limit.take(len(chunk))
            try:
                f.write(chunk)
            except OSError as exc:
                raise _disk_error(partial, exc) from exc
            digest.update(chunk)
            received += len(chunk)
            bar.advance(len(chunk))
        try:
            f.flush()
            os.fsync(f.fileno())
        except OSError as exc:
            raise _disk_error(partial, exc) from exc
        if received != remote.size:
            raise ClientError(
                f"download {remote.id}: got {received} of {remote.size} bytes "
                f"({human(received)} of {human(remote.size)})"
            )

    @staticmethod
    def _check_content_range(response: httpx.Response, start: int, size: int, action: str) -> None:
        expected = f"bytes {start}-{size - 1}/{size}"
        if response.headers.get("content-range") != expected:
            raise ClientError(
                f"{action}: asked for bytes {start}- and got "
                f"{response.headers.get('content-range')!r}"
            )
