"""The server side of the e2e suite: a real `filesvc serve` process, its users, its storage
(local disk, or an S3 bucket when its env says FILESVC_STORAGE=s3)."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.seaweedfs import REGION, pending_uploads, s3_client, stored_keys

ADMIN = "admin"
TRACEBACK = "Traceback (most recent call last)"
STARTUP_DEADLINE = 60.0  # two cores shared with other jobs: starts can be slow
SHUTDOWN_DEADLINE = 15.0
MiB = 1024 * 1024
# FILESVC_MAX_UPLOAD_BYTES of the `limited_server` fixture.
UPLOAD_LIMIT_BYTES = 10 * MiB
# Objects sit three levels down under server-made hex keys (see storage/local.py).
BLOB_PATH_RE = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{32}$")
S3_KEY_RE = re.compile(r"^[0-9a-f]{32}$")
TMP_DIR = ".tmp"
# The S3 servers' part size: S3's smallest, so the boundary sizes cross into multipart.
S3_PART_BYTES = 5 * MiB


# --- waiting -------------------------------------------------------------------------


def wait_for(
    condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.02
) -> None:
    """Poll `condition` until it holds; fail with `what` once the deadline passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- files on the test side ------------------------------------------------------------


@dataclass(frozen=True)
class LocalFile:
    path: Path
    size: int
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def make_random_file(path: Path, size: int) -> LocalFile:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        remaining = size
        while remaining:
            chunk = os.urandom(min(MiB, remaining))
            digest.update(chunk)
            f.write(chunk)
            remaining -= len(chunk)
    return LocalFile(path, size, digest.hexdigest())


# --- the server process ----------------------------------------------------------------


@dataclass(frozen=True)
class S3Target:
    """Where an S3 server keeps its objects."""

    endpoint_url: str
    bucket: str

    def env(self) -> dict[str, str]:
        return {
            "FILESVC_STORAGE": "s3",
            "FILESVC_S3_BUCKET": self.bucket,
            "FILESVC_S3_ENDPOINT_URL": self.endpoint_url,
            "FILESVC_S3_REGION": REGION,
            "FILESVC_S3_PART_SIZE_BYTES": str(S3_PART_BYTES),
        }


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    root: Path  # the process's working directory: data/ and the two logs
    data_dir: Path
    stderr_path: Path
    admin_password: str
    admin_token: str = ""
    s3: S3Target | None = None
    _checked_offset: int = field(default=0, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    def url(self, path: str) -> str:
        return self.base_url + path

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def client(self, token: str | None = None, timeout: float = 30.0) -> httpx.Client:
        headers = self.auth(token) if (token or self.admin_token) else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def new_tracebacks(self) -> str:
        """Server stderr written since the last call, if it holds a Python traceback."""
        with self.stderr_path.open("rb") as f:
            f.seek(self._checked_offset)
            data = f.read()
        self._checked_offset += len(data)
        text = data.decode("utf-8", "replace")
        return text if TRACEBACK in text else ""

    def file_ids(self) -> set[str]:
        """Every row, as the admin sees them through the API."""
        ids: set[str] = set()
        cursor: str | None = None
        with self.client() as client:
            while True:
                params: dict[str, str | int] = {"limit": 1000}
                if cursor:
                    params["cursor"] = cursor
                response = client.get("/api/v1/files", params=params)
                assert response.status_code == 200, response.text
                page = response.json()
                ids.update(item["id"] for item in page["items"])
                cursor = page["next_cursor"]
                if cursor is None:
                    return ids

    def get_file(self, file_id: str) -> dict[str, Any]:
        with self.client() as client:
            response = client.get(f"/api/v1/files/{file_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def assert_serving(self) -> None:
        assert self.process.poll() is None, "the server process exited"
        response = httpx.get(self.url("/healthz"), timeout=5.0)
        assert response.status_code == 200


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _wait_healthy(
    process: subprocess.Popen[bytes],
    base_url: str,
    stderr_path: Path,
    startup_deadline: float = STARTUP_DEADLINE,
) -> bool:
    """True once /healthz answers 200; False if the process exits first."""
    deadline = time.monotonic() + startup_deadline
    with httpx.Client(base_url=base_url, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                if client.get("/healthz").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    stop_process(process)
    pytest.fail(
        f"server did not answer /healthz within {startup_deadline:.0f}s:\n"
        + stderr_path.read_text(errors="replace")[-4000:]
    )


def stop_process(process: subprocess.Popen[bytes]) -> bool:
    """SIGTERM by pid, SIGKILL after a deadline. True if it stopped on SIGTERM."""
    if process.poll() is not None:
        return True
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=SHUTDOWN_DEADLINE)
        return True
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=SHUTDOWN_DEADLINE)
        return False


def login(base_url: str, username: str, password: str) -> str:
    response = httpx.post(
        base_url + "/api/v1/auth/token",
        data={"username": username, "password": password},
        timeout=30.0,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@contextmanager
def run_server(
    root: Path,
    extra_env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    startup_deadline: float = STARTUP_DEADLINE,
) -> Iterator[RunningServer]:
    """Run `python -m filesvc serve [args]` on a free port with its data in `root/data`.

    On exit the process gets SIGTERM (then SIGKILL); the test fails if it had to be
    killed or if its stderr holds a traceback not yet reported by a per-test check.
    """
    data_dir = root / "data"
    stdout_path, stderr_path = root / "server.stdout.log", root / "server.stderr.log"
    # A restart on the same data dir must reuse the admin password it was created with.
    password = (extra_env or {}).get("FILESVC_ADMIN_PASSWORD") or secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILESVC_")}
    env |= {
        "FILESVC_DATA_DIR": str(data_dir),
        "FILESVC_ADMIN_PASSWORD": password,
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    host = "127.0.0.1"
    for _attempt in range(3):  # another process may grab the free port before we bind it
        port = free_port(host)
        with stdout_path.open("ab") as out, stderr_path.open("ab") as err:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "filesvc",
                    "serve",
                    "--host",
                    host,
                    "--port",
                    str(port),
                    *args,
                ],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        if _wait_healthy(process, f"http://{host}:{port}", stderr_path, startup_deadline):
            break
        process.wait()
        if "address already in use" not in stderr_path.read_text(errors="replace").lower():
            pytest.fail(
                f"server exited with {process.returncode} before it was healthy:\n"
                + stderr_path.read_text(errors="replace")[-4000:]
            )
    else:
        pytest.fail("could not start the server on a free port")

    s3 = None
    if env.get("FILESVC_STORAGE") == "s3":
        s3 = S3Target(env["FILESVC_S3_ENDPOINT_URL"], env["FILESVC_S3_BUCKET"])
    server = RunningServer(
        process=process,
        host=host,
        port=port,
        root=root,
        data_dir=data_dir,
        stderr_path=stderr_path,
        admin_password=password,
        s3=s3,
    )
    try:
        server.admin_token = login(server.base_url, ADMIN, password)
        yield server
    finally:
        stopped_cleanly = stop_process(process)
    tracebacks = server.new_tracebacks()
    if tracebacks:
        pytest.fail(f"the server wrote a traceback to stderr:\n{tracebacks[-8000:]}")
    if not stopped_cleanly:
        pytest.fail(f"the server ignored SIGTERM for {SHUTDOWN_DEADLINE:.0f}s and was killed")


@dataclass(frozen=True)
class User:
    id: str
    username: str
    password: str
    token: str


def create_user(server: RunningServer, role: str = "editor") -> User:
    """Create a user through the admin API and sign in as it."""
    username = f"{role}-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    with server.client() as client:
        response = client.post(
            "/api/v1/users", json={"username": username, "password": password, "role": role}
        )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["role"] == role
    return User(body["id"], username, password, login(server.base_url, username, password))


# --- what is stored --------------------------------------------------------------------


def blob_files(server: RunningServer) -> set[str]:
    """Everything stored, unfinished writes included: every file under <data>/blobs as a
    relative POSIX path (temp files in .tmp/), or on S3 every object key of the bucket and
    every pending multipart upload as .tmp/<key>.<upload id>."""
    if server.s3 is not None:
        client = s3_client(server.s3.endpoint_url)
        objects = set(stored_keys(client, server.s3.bucket))
        pending = {f"{TMP_DIR}/{name}" for name in pending_uploads(client, server.s3.bucket)}
        return objects | pending
    root = server.blobs_dir
    return {
        (Path(dirpath) / name).relative_to(root).as_posix()
        for dirpath, _dirs, files in os.walk(root)
        for name in files
    }


def tmp_files(server: RunningServer) -> set[str]:
    return {path for path in blob_files(server) if path.startswith(TMP_DIR + "/")}


@dataclass(frozen=True)
class Snapshot:
    rows: set[str]
    blobs: set[str]


def snapshot(server: RunningServer) -> Snapshot:
    return Snapshot(rows=server.file_ids(), blobs=blob_files(server))


def assert_nothing_kept(server: RunningServer, before: Snapshot) -> None:
    """No new row (as the API shows them), no new blob, no temp file left."""
    assert server.file_ids() == before.rows, "a rejected upload left a row"
    assert blob_files(server) == before.blobs, "a rejected upload left a file under blobs/"
    assert not tmp_files(server)


def new_blob(server: RunningServer, before: Snapshot) -> Path:
    """The one blob stored since `before`, as a local file (an S3 object is fetched)."""
    added = blob_files(server) - before.blobs
    assert len(added) == 1, f"expected exactly one new blob, found {sorted(added)}"
    (relative,) = added
    if server.s3 is not None:
        assert S3_KEY_RE.match(relative), relative
        copy = server.blobs_dir / "s3-copies" / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        s3_client(server.s3.endpoint_url).download_file(server.s3.bucket, relative, str(copy))
        return copy
    assert BLOB_PATH_RE.match(relative), relative
    return server.blobs_dir / relative
