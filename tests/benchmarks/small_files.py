"""Small requests under load (`make bench`, or alone with BENCH_ARGS="--small-only"): wrk with
16 connections against a real `filesvc serve` on SQLite and on PostgreSQL, with one worker
and with two (Redis then, as `--workers 2` requires), and against copyparty (anonymous,
the reference) in the same run, measured again right before each database's cases: on a
shared host its figures drifted by a third within minutes, and a target compares one
worker with the copyparty figures taken next to it:

- GET /healthz: the framework's own ceiling;
- GET /api/v1/files/{id} (bearer token): a metadata read;
- GET /api/v1/files/{id}/content (bearer token): a 4 KiB download;
- PUT /api/v1/files/raw/<new name> (bearer token): a 4 KiB durable upload, every request a
  new file; afterwards the rows are counted (every 201 must have stored one).

Each case reports req/s, p50/p99/max latency and the server's CPU-ms per request (user +
system of the whole process tree from /proc: steadier than req/s on a shared machine).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.benchmarks.common import BenchError, log
from tests.benchmarks.copyparty import CopypartyReference, install_copyparty
from tests.benchmarks.processes import free_port, start_logged, stop_process, tail, wait_until
from tests.benchmarks.procfs import cpu_seconds
from tests.benchmarks.wrk import WrkResult, ensure_wrk, put_script, run_wrk

SMALL = 4096
REDIS_URL = os.environ.get("FILESVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_ms: float  # server CPU per request
    requests: int
    failed: int


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and all its descendants (a supervisor and its workers)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            total += cpu_seconds(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
    return total


def measured(name: str, pid: int, run: Any) -> Case:
    before = tree_cpu_seconds(pid)
    result: WrkResult = run()
    used = tree_cpu_seconds(pid) - before
    case = Case(
        name=name,
        per_second=round(result.per_second, 1),
        p50_ms=round(result.p50_ms, 2),
        p99_ms=round(result.p99_ms, 2),
        max_ms=round(result.max_ms, 1),
        cpu_ms=round(used * 1000 / max(result.requests, 1), 3),
        requests=result.requests,
        failed=result.failed,
    )
    log(
        f"  {name:<28} {case.per_second:>8.0f}/s  p50 {case.p50_ms:7.2f} ms  "
        f"p99 {case.p99_ms:7.2f} ms  max {case.max_ms:7.1f} ms  {case.cpu_ms:6.3f} CPU-ms/req"
    )
    return case


class SmallServer:
    """`filesvc serve --workers N` on a free port, as admin with a token and one 4 KiB file."""

    def __init__(self, filesvc_bin: Path, root: Path, workers: int, database_url: str | None):
        self.bin = filesvc_bin
        self.root = root
        self.workers = workers
        self.database_url = database_url
        self.port = free_port()
        self.password = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.file_id = ""

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FILESVC_")}
        env |= {
            "FILESVC_DATA_DIR": str(self.root / "data"),
            "FILESVC_ADMIN_PASSWORD": self.password,
        }
        if self.database_url:
            env["FILESVC_DATABASE_URL"] = self.database_url
        if self.workers > 1:
            env["FILESVC_REDIS_URL"] = REDIS_URL
        return env

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError("filesvc is not running")
        return self.proc.pid

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log_path = self.root / "filesvc.log"
        cmd = [str(self.bin), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--workers", str(self.workers)]
        self.proc = start_logged(cmd, log_path, env=self._env())
        try:
            wait_until(self._healthy, 90, "filesvc /healthz", self.proc)
        except BenchError as exc:
            raise BenchError(f"{exc}\n{tail(log_path)}") from exc
        form = urlencode({"username": "admin", "password": self.password}).encode()
        status, body = self.request(
            "POST",
            "/api/v1/auth/token",
            form,
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        if status != 200:
            raise BenchError(f"login answered {status}: {body[:300]!r}")
        self.token = json.loads(body)["access_token"]
        status, body = self.request("PUT", "/api/v1/files/raw/small.bin", os.urandom(SMALL))
        if status != 201:
            raise BenchError(f"4 KiB upload answered {status}: {body[:300]!r}")
        self.file_id = json.loads(body)["id"]

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, "filesvc")
            self.proc = None

    def _healthy(self) -> bool:
        try:
            return self.request("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def count_files(self, prefix: str) -> int:
        """Rows whose names start with `prefix`, through the list API."""
        count, cursor = 0, None
        while True:
            query = {"limit": "1000", "q": prefix} | ({"cursor": cursor} if cursor else {})
            status, body = self.request("GET", "/api/v1/files?" + urlencode(query))
            if status != 200:
                raise BenchError(f"listing files answered {status}: {body[:300]!r}")
            page = json.loads(body)
            count += sum(1 for item in page["items"] if item["name"].startswith(prefix))
            cursor = page["next_cursor"]
            if not cursor:
                return count


def _checked_puts(case: Case, stored: int, what: str) -> Case:
    """Every 201 stored a file; requests cut at the end may have stored one more each."""
    answered = case.requests - case.failed
    if not answered <= stored <= case.requests + 16:
        raise BenchError(f"{what}: {answered} uploads answered 201, but {stored} files stored")
    log(f"    {stored} files stored for {answered} answers")
    return case


def filesvc_cases(server: SmallServer, work: Path, seconds: int) -> dict[str, Case]:
    auth = {"Authorization": f"Bearer {server.token}"}
    meta = f"/api/v1/files/{server.file_id}"
    prefix = f"sf{secrets.token_hex(3)}"
    upload = put_script("/api/v1/files/raw/", SMALL)
    cases = {
        "healthz": measured("GET /healthz", server.pid, lambda: run_wrk(
            server.url("/healthz"), work, seconds)),
        "metadata": measured("GET metadata (bearer)", server.pid, lambda: run_wrk(
            server.url(meta), work, seconds, auth)),
        "get_4k": measured("GET 4 KiB (bearer)", server.pid, lambda: run_wrk(
            server.url(meta + "/content"), work, seconds, auth)),
        "put_4k": measured("PUT 4 KiB (bearer)", server.pid, lambda: run_wrk(
            server.url("/"), work, seconds, auth, upload, (prefix,))),
    }  # fmt: skip
    _checked_puts(cases["put_4k"], server.count_files(prefix), "filesvc")
    return cases


def measure_copyparty(python: Path, root: Path, work: Path, seconds: int) -> dict[str, Any]:
    """copyparty's cases on a fresh folder of its own, alone on the machine."""
    reference = CopypartyReference(python, root)
    try:
        reference.start()
        return {k: asdict(v) for k, v in copyparty_cases(reference, work, seconds).items()}
    finally:
        reference.stop()


def copyparty_cases(reference: CopypartyReference, work: Path, seconds: int) -> dict[str, Case]:
    status, _ = reference.request("PUT", "/small.bin", os.urandom(SMALL))
    if status not in (200, 201):
        raise BenchError(f"copyparty PUT answered {status}")
    prefix = f"sf{secrets.token_hex(3)}"
    cases = {
        "get_4k": measured("copyparty GET 4 KiB", reference.pid, lambda: run_wrk(
            reference.url("/small.bin"), work, seconds)),
        "put_4k": measured("copyparty PUT 4 KiB", reference.pid, lambda: run_wrk(
            reference.url("/"), work, seconds, None, put_script("/", SMALL), (prefix,))),
    }  # fmt: skip
    _checked_puts(cases["put_4k"], reference.stored(prefix), "copyparty")
    return cases


@contextlib.contextmanager
def _database(stack: str) -> Iterator[str | None]:
    if stack == "sqlite":
        yield None
        return
    from tests.conftest import new_postgres_database  # asyncpg and the admin URL live there

    with new_postgres_database("filesvc_bench") as url:
        yield url


def run_small_files(root: Path, filesvc_bin: Path, seconds: int) -> dict[str, Any]:
    ensure_wrk()
    root = root / "small"
    work = root / "work"
    work.mkdir(parents=True)
    log(f"small files: wrk -c16 -t2 -d{seconds}s; copyparty installed into {root / 'venv'}")
    report: dict[str, Any] = {
        "seconds": seconds,
        "loadavg": os.getloadavg(),
        "copyparty": {},
        "filesvc": {},
    }
    python = install_copyparty(root / "venv")
    for stack in ("sqlite", "postgresql"):
        log(f"copyparty, the reference for {stack}:")
        report["copyparty"][stack] = measure_copyparty(
            python, root / f"copyparty-{stack}", work, seconds
        )
        for workers in (1, 2):
            label = f"{stack}-{workers}w"
            log(f"filesvc, {stack}, {workers} worker(s):")
            with _database(stack) as url:
                server = SmallServer(filesvc_bin, root / label, workers, url)
                try:
                    server.start()
                    time.sleep(1)  # let the workers settle before the first run
                    cases = filesvc_cases(server, work, seconds)
                finally:
                    server.stop()
            report["filesvc"][label] = {k: asdict(v) for k, v in cases.items()}
    report["targets"] = targets(report)
    return report


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets (one worker, same run) as ratios, per stack, each against the
    copyparty figures measured right before it."""
    out: dict[str, Any] = {}
    for stack in ("sqlite", "postgresql"):
        reference = report["copyparty"][stack]
        cases = report["filesvc"][f"{stack}-1w"]
        put = cases["put_4k"]
        out[stack] = {
            "get_4k_vs_copyparty_get (>= 1.0)": round(
                cases["get_4k"]["per_second"] / reference["get_4k"]["per_second"], 2
            ),
            "metadata_vs_healthz (>= 0.4)": round(
                cases["metadata"]["per_second"] / cases["healthz"]["per_second"], 2
            ),
            "put_4k_vs_copyparty_put (>= 0.5)": round(
                put["per_second"] / reference["put_4k"]["per_second"], 2
            ),
            "put_4k_p99_ms (< 100)": put["p99_ms"],
            "put_4k_max_ms (< 1000)": put["max_ms"],
        }
    return out


def render_small_table(report: dict[str, Any]) -> str:
    lines = [
        f"Small requests: wrk -c16 -t2 -d{report['seconds']}s, load average at start "
        f"{[round(x, 2) for x in report['loadavg']]}",
        f"{'server':<22} {'case':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'CPU-ms/req':>10}",
    ]
    rows = [
        *((f"copyparty ({stack})", cases) for stack, cases in report["copyparty"].items()),
        *report["filesvc"].items(),
    ]
    for server, cases in rows:
        for name, case in cases.items():
            lines.append(
                f"{server:<22} {name:<10} {case['per_second']:>8.0f} {case['p50_ms']:>8.2f} "
                f"{case['p99_ms']:>8.2f} {case['max_ms']:>8.1f} {case['cpu_ms']:>10.3f}"
            )
    for stack, ratios in report["targets"].items():
        lines.append(
            f"targets, {stack}, one worker: " + ", ".join(f"{k} {v}" for k, v in ratios.items())
        )
    return "\n".join(lines)
