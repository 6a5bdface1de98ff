"""The `filesvc` client commands run as a user runs them: a real process with its own
config and state dirs, against a real server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .server import RunningServer

ANSI_OR_CR = re.compile(r"\x1b\[|\r")


@dataclass
class Cli:
    home: Path  # the working directory; the XDG config and state dirs are inside
    server: RunningServer
    token: str | None = None

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("FILESVC_")}
        env |= {
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_STATE_HOME": str(self.home / ".state"),
            "FILESVC_SERVER": self.server.base_url,
        }
        if self.token:
            env["FILESVC_TOKEN"] = self.token
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "filesvc", *args]

    def run(self, *args: str, stdin: str = "", timeout: float = 180.0) -> Result:
        completed = subprocess.run(
            self.command(*args),
            env=self.env(),
            cwd=self.home,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(completed.returncode, completed.stdout, completed.stderr)

    def start(self, *args: str, name: str) -> subprocess.Popen[bytes]:
        """The command in the background, its output in `<home>/<name>.out|err`."""
        with (
            (self.home / f"{name}.out").open("wb") as out,
            (self.home / f"{name}.err").open("wb") as err,
        ):
            return subprocess.Popen(
                self.command(*args),
                env=self.env(),
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    @property
    def credentials_file(self) -> Path:
        return self.home / ".config" / "filesvc" / "credentials.json"

    def upload_state(self) -> dict[str, Any]:
        """The remembered tus URLs: {"[server, path, size, mtime]": {"url": …}}."""
        path = self.home / ".state" / "filesvc" / "uploads.json"
        if not path.is_file():
            return {}
        try:
            state: dict[str, Any] = json.loads(path.read_text())
        except ValueError:  # caught between two writes? they are atomic renames; be sure
            return {}
        return state


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def assert_plain(self) -> None:
        """Output for a log or a pipe: whole lines, no escape codes or carriage returns."""
        assert not ANSI_OR_CR.search(self.stdout + self.stderr), (self.stdout, self.stderr)


class AccessLog:
    """The server's access lines (its stderr) written after a mark."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.offset = server.stderr_path.stat().st_size

    def lines(self, method: str, path: str) -> list[tuple[int, str]]:
        """(status, client address) of each `METHOD path` request since the mark."""
        with self.server.stderr_path.open("rb") as f:
            f.seek(self.offset)
            text = f.read().decode("utf-8", "replace")
        pattern = re.compile(rf'(\S+) "{re.escape(method)} {re.escape(path)}" (\d{{3}}) ')
        return [(int(m[2]), m[1]) for line in text.splitlines() if (m := pattern.search(line))]
