"""What lets a command pick up where an interrupted one stopped, in the user's state dir:
the tus upload URL of each local file, and the ETag each partial download came from."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filesvc.client.store import JsonStore, state_dir

# Servers expire idle uploads after a day by default; older entries only take up room.
MAX_AGE_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class UploadKey:
    """A local file as it was: any change to its size or mtime makes it a new upload."""

    server: str
    path: str  # absolute
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, server: str, path: Path) -> UploadKey:
        absolute = path.resolve()
        stat = absolute.stat()
        return cls(server, str(absolute), stat.st_size, stat.st_mtime_ns)

    def encoded(self) -> str:
        return json.dumps([self.server, self.path, self.size, self.mtime_ns])


@dataclass(frozen=True)
class PartialDownload:
    server: str
    file_id: str
    etag: str


def _prune(entries: dict[str, Any], now: float) -> None:
    for key in [k for k, v in entries.items() if now - _saved_at(v) > MAX_AGE_SECONDS]:
        del entries[key]


def _saved_at(entry: Any) -> float:
    try:
        return float(entry["saved_at"])
    except (KeyError, TypeError, ValueError):
        return 0.0


class ResumeState:
    def __init__(self, directory: Path | None = None) -> None:
        directory = directory or state_dir()
        self._uploads = JsonStore(directory / "uploads.json")
        self._downloads = JsonStore(directory / "downloads.json")

    # --- uploads: the tus URL of a local file ----------------------------------------

    def upload_url(self, key: UploadKey) -> str | None:
        entry = self._uploads.read().get(key.encoded())
        url = entry.get("url") if isinstance(entry, dict) else None
        return url if isinstance(url, str) else None

    def remember_upload(self, key: UploadKey, url: str) -> None:
        now = time.time()
        with self._uploads.update() as entries:
            _prune(entries, now)
            entries[key.encoded()] = {"url": url, "saved_at": now}

    def forget_upload(self, key: UploadKey) -> None:
        with self._uploads.update() as entries:
            entries.pop(key.encoded(), None)

    # --- downloads: where a partial file came from ------------------------------------

    def partial_download(self, partial: Path) -> PartialDownload | None:
        entry = self._downloads.read().get(os.path.abspath(partial))
        if not isinstance(entry, dict):
            return None
        try:
            return PartialDownload(str(entry["server"]), str(entry["file_id"]), str(entry["etag"]))
        except KeyError:
            return None

    def remember_download(self, partial: Path, download: PartialDownload) -> None:
        now = time.time()
        with self._downloads.update() as entries:
            _prune(entries, now)
            entries[os.path.abspath(partial)] = {
                "server": download.server,
                "file_id": download.file_id,
                "etag": download.etag,
                "saved_at": now,
            }

    def forget_download(self, partial: Path) -> None:
        with self._downloads.update() as entries:
            entries.pop(os.path.abspath(partial), None)
