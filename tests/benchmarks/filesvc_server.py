"""A real filesvc in a subprocess: migrate, serve (one worker, so the spawned pid is the
server), authenticate, upload, download and delete through its API, read its memory."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.benchmarks.common import BenchError, log
from tests.benchmarks.processes import free_port, start_logged, stop_process, tail, wait_until
from tests.benchmarks.procfs import (
    listening_socket_inode,
    owns_socket,
    proc_status,
    reset_peak_rss,
    status_kib,
)
from tests.benchmarks.transfers import curl_download, curl_upload, download_sha256


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchError(f"{what}: response is not JSON: {text[:300]!r}") from exc
    if not isinstance(value, dict):
        raise BenchError(f"{what}: expected a JSON object, got {text[:300]!r}")
    return value


class FilesvcServer:
    """`filesvc migrate` then `filesvc serve` (single worker) on a free loopback port."""

    def __init__(
        self, filesvc_bin: Path, root: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self.bin = filesvc_bin
        self.extra_env = extra_env or {}
        self.root = root
        self.data_dir = root / "data"
        self.port = free_port()
        self.password = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.startup_rss_kib = 0
        self.startup_hwm_kib = 0
        self.hwm_before_reset_kib = 0

    @property
    def log_path(self) -> Path:
        return self.root / "filesvc.log"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FILESVC_")}
        env["FILESVC_DATA_DIR"] = str(self.data_dir)
        env["FILESVC_ADMIN_PASSWORD"] = self.password
        return env | self.extra_env

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError("filesvc is not running")
        return self.proc.pid

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        migrate = subprocess.run(
            [str(self.bin), "migrate"], env=self._env(), capture_output=True, text=True
        )
        if migrate.returncode != 0:
            out = (migrate.stdout + migrate.stderr)[-3000:]
            raise BenchError(f"filesvc migrate exited {migrate.returncode}:\n{out}")
        cmd = [str(self.bin), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = start_logged(cmd, self.log_path, env=self._env())
        try:
            wait_until(self._healthy, 60, "filesvc /healthz", self.proc)
        except BenchError as exc:
            raise BenchError(f"{exc}\n{tail(self.log_path)}") from exc
        self._verify_single_process()
        self.startup_rss_kib = status_kib(self.pid, "VmRSS")
        self.startup_hwm_kib = status_kib(self.pid, "VmHWM")
        self.token = self._get_token()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, "filesvc")
            self.proc = None

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def _healthy(self) -> bool:
        try:
            status, _ = self._request("GET", "/healthz")
        except OSError:
            return False
        return status == 200

    def _verify_single_process(self) -> None:
        """The spawned pid must own the listening socket, or its RSS is not the server's."""
        status = proc_status(self.pid)
        inode = listening_socket_inode(self.port)
        if inode is None or not owns_socket(self.pid, inode):
            raise BenchError(
                f"pid {self.pid} ({status.get('Name')}) does not hold the socket listening on "
                f"port {self.port}: the server runs in another process, RSS would be wrong"
            )
        log(
            f"filesvc pid {self.pid} ({status.get('Name')}, state {status.get('State')}, "
            f"{status.get('Threads')} threads) serves 127.0.0.1:{self.port}"
        )

    def _get_token(self) -> str:
        form = urlencode({"username": "admin", "password": self.password}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        status, body = self._request("POST", "/api/v1/auth/token", form, headers)
        if status != 200:
            raise BenchError(f"POST /api/v1/auth/token answered {status}: {body[:300]!r}")
        token = parse_json_object(body.decode(errors="replace"), "token").get("access_token")
        if not isinstance(token, str) or not token:
            raise BenchError(f"token response has no access_token: {body[:300]!r}")
        return token

    @property
    def auth_header(self) -> str:
        return f"Authorization: Bearer {self.token}"

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1{path}"

    def upload_multipart(self, src: Path, sha256: str, work: Path) -> tuple[float, str]:
        """`curl -F file=@src` to POST /files; returns (bytes/s, file id)."""
        args = ["-F", f"file=@{src}", "-H", self.auth_header, self._url("/files")]
        result = curl_upload(args, work / "filesvc-resp.json")
        return result.speed_bps, self._check_upload(result.http_code, result.body, src, sha256)

    def upload_raw(
        self,
        src: Path,
        sha256: str,
        work: Path,
        transfer_id: str | None = None,
        curl_args: tuple[str, ...] = (),
    ) -> tuple[float, str]:
        """`curl -T src` to PUT /files/raw/<name>; returns (bytes/s, file id)."""
        args = [*curl_args, "-T", str(src), "-H", self.auth_header]
        if transfer_id is not None:
            args += ["-H", f"X-Transfer-Id: {transfer_id}"]
        args += [
            "-H",
            "Content-Type: application/octet-stream",
            self._url(f"/files/raw/{src.name}"),
        ]
        result = curl_upload(args, work / "filesvc-resp.json")
        return result.speed_bps, self._check_upload(result.http_code, result.body, src, sha256)

    def _check_upload(self, code: int, body: str, src: Path, sha256: str) -> str:
        if code != 201:
            raise BenchError(f"filesvc upload answered {code}, expected 201: {body[:300]}")
        doc: dict[str, Any] = parse_json_object(body, "filesvc upload")
        expected_size = src.stat().st_size
        if doc.get("size") != expected_size:
            raise BenchError(f"filesvc upload: size {doc.get('size')}, sent {expected_size}")
        if doc.get("sha256") != sha256:
            raise BenchError(f"filesvc upload: sha256 {doc.get('sha256')}, file has {sha256}")
        file_id = doc.get("id")
        if not isinstance(file_id, str) or not file_id:
            raise BenchError(f"filesvc upload: no id in {body[:300]}")
        return file_id

    def verify_download(self, file_id: str, src: Path, sha256: str) -> None:
        url = self._url(f"/files/{file_id}/content")
        digest, count = download_sha256(url, [self.auth_header])
        if digest != sha256 or count != src.stat().st_size:
            raise BenchError(f"filesvc download: got {count} bytes, sha256 {digest}")

    def download(self, file_id: str, src: Path, transfer_id: str | None = None) -> float:
        headers = [self.auth_header]
        if transfer_id is not None:
            headers.append(f"X-Transfer-Id: {transfer_id}")
        result = curl_download(self._url(f"/files/{file_id}/content"), headers)
        expected = src.stat().st_size
        if result.http_code != 200 or result.size != expected:
            raise BenchError(f"filesvc download: {result.http_code}, {result.size}/{expected} B")
        return result.speed_bps

    def archive(self, file_id: str, src: Path) -> float:
        """GET /archive of the one file: a zip built and CRC'd while it streams."""
        result = curl_download(self._url(f"/archive?id={file_id}"), [self.auth_header])
        # Stored, not deflated: the zip is the file plus headers of a few hundred bytes.
        expected = src.stat().st_size
        if result.http_code != 200 or not expected < result.size < expected + 4096:
            raise BenchError(f"filesvc archive: {result.http_code}, {result.size} B")
        return result.speed_bps

    def delete(self, file_id: str) -> None:
        """DELETE a file the benchmark no longer needs (a failure is only reported)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        status, body = self._request("DELETE", f"/api/v1/files/{file_id}", None, headers)
        if status != 204:
            log(f"  warning: DELETE /api/v1/files/{file_id} answered {status}: {body[:200]!r}")

    def peak_rss_kib(self) -> int:
        """VmHWM: the kernel's high-water mark of the server's resident set, since the start
        or since the last `reset_peak_rss()`."""
        if self.proc is None or self.proc.poll() is not None:
            raise BenchError("filesvc exited during the benchmark\n" + tail(self.log_path))
        return status_kib(self.pid, "VmHWM")

    def reset_peak_rss(self) -> None:
        """Start a new VmHWM window. The reset loses the peak so far, so it is read first:
        the whole-process peak is the larger of `hwm_before_reset_kib` and the next VmHWM."""
        self.hwm_before_reset_kib = self.peak_rss_kib()
        reset_peak_rss(self.pid)
