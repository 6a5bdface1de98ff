"""copyparty, the small-file reference: installed with pip into its own venv in the bench's
work dir (never a dependency of filesvc), serving one anonymous read-write folder."""

from __future__ import annotations

import http.client
import subprocess
import sys
from pathlib import Path

from tests.benchmarks.common import BenchError, log
from tests.benchmarks.processes import free_port, start_logged, stop_process, tail, wait_until


def install_copyparty(venv: Path) -> Path:
    """`copyparty` in a fresh venv under `venv`; its python."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "copyparty"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BenchError(f"pip install copyparty failed: {done.stderr[-2000:]}")
    return python


class CopypartyReference:
    """One copyparty process (its default: one process, a thread per connection) serving
    `folder` read-write to anyone at / on a free loopback port; requests logged to a file,
    as filesvc's are."""

    def __init__(self, python: Path, root: Path) -> None:
        self.python = python
        self.root = root
        self.folder = root / "files"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "copyparty.log"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError("copyparty is not running")
        return self.proc.pid

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(self.python), "-m", "copyparty",
            "-i", "127.0.0.1", "-p", str(self.port),
            "-v", f"{self.folder}::rw",  # anonymous read-write at /
            "--no-crt", "-nih", "--hist", str(self.root / "hist"),
        ]  # fmt: skip
        self.proc = start_logged(cmd, self.log_path, cwd=self.root)
        try:
            wait_until(self._ready, 60, "copyparty", self.proc)
        except BenchError as exc:
            raise BenchError(f"{exc}\n{tail(self.log_path)}") from exc
        log(f"copyparty pid {self.pid} serves 127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, "copyparty")
            self.proc = None

    def _ready(self) -> bool:
        try:
            status, _ = self.request("GET", "/?ls")
        except OSError:
            return False
        return status == 200

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stored(self, prefix: str) -> int:
        """Files whose names start with `prefix`, on disk."""
        return sum(1 for path in self.folder.iterdir() if path.name.startswith(prefix))
