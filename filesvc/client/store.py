"""Small JSON files in the user's own directories: private (0600 in a 0700 folder),
replaced atomically, read-modify-write under a lock so two commands at once don't lose
each other's entries."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platformdirs

from filesvc.client.errors import ClientError

APP = "filesvc"
FILE_MODE = 0o600
DIR_MODE = 0o700


def config_dir() -> Path:
    """`$XDG_CONFIG_HOME/filesvc` (~/.config/filesvc) on Linux."""
    return Path(platformdirs.user_config_dir(APP, appauthor=False))


def state_dir() -> Path:
    """`$XDG_STATE_HOME/filesvc` (~/.local/state/filesvc) on Linux."""
    return Path(platformdirs.user_state_dir(APP, appauthor=False))


class JsonStore:
    """One JSON object in one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ClientError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text)
        except ValueError:
            return {}  # a damaged file holds nothing we can trust; the next write fixes it
        return data if isinstance(data, dict) else {}

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        """Yield the current object under an exclusive lock; write it back on exit."""
        self._make_dir()
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise ClientError(f"cannot write {lock_path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            data = self.read()
            yield data
            self._write(data)
        finally:
            os.close(lock_fd)  # closing releases the lock

    def _make_dir(self) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            os.chmod(directory, DIR_MODE)  # ours alone, even if it existed already
        except OSError as exc:
            raise ClientError(f"cannot create {directory}: {exc.strerror or exc}") from exc

    def _write(self, data: dict[str, Any]) -> None:
        # mkstemp creates the file 0600; the rename makes the new content appear at once.
        try:
            fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        except OSError as exc:
            raise ClientError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(temp, FILE_MODE)
            os.replace(temp, self.path)
        except OSError as exc:
            Path(temp).unlink(missing_ok=True)
            raise ClientError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
