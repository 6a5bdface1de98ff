"""Durable writes: one big raw upload and 64 concurrent 1 MiB uploads against `dd conv=fsync`.

`dd if=SRC of=DEST bs=1M conv=fsync` of the same file on the same file system is the limit
of a durable write here: read from the page cache, copied into the kernel, fsynced. The
filesvc raw upload (`curl -T`) does that plus the HTTP parsing, the SHA-256 and the
commit (row, fsyncs); the target is at least 90% of dd's MB/s. Then `curl --parallel`
keeps 64 uploads of a 1 MiB file in flight (UPLOADS_PER_ROUND in all per run, each checked
for its 201 and its size), whose aggregate MB/s should reach 80% of the big upload's.

A bare socket sink (`socket_sink.py`: recv_into, SHA-256 in a second thread, write,
fsync; no framework) takes the same upload in the same run: the most a Python server made
of it here, so the distance from dd splits into this machine's and filesvc's.

Besides MB/s (1 MB = 10^6 bytes), the CPU time the server (user + system, all threads,
from /proc) and dd spent, per GiB moved: steadier than MB/s on a shared machine.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.benchmarks.common import MIB, BenchError, log
from tests.benchmarks.filesvc_server import FilesvcServer
from tests.benchmarks.procfs import status_kib
from tests.benchmarks.socket_sink import SocketSink
from tests.benchmarks.transfers import (
    CURL_MAX_TIME_S,
    make_test_file,
    ready_to_write,
)

MB = 1_000_000
GIB = 1024 * MIB
PARALLEL = 64
UPLOADS_PER_ROUND = 512
DD_TARGET = 0.90
PARALLEL_TARGET = 0.80
T = TypeVar("T")


@dataclass(frozen=True)
class Cost:
    """Bytes moved in `seconds` of wall time, for `user` + `system` CPU seconds."""

    size: int
    seconds: float
    user: float
    system: float

    @property
    def mb_s(self) -> float:
        return self.size / self.seconds / MB

    @property
    def cpu_s_per_gib(self) -> float:
        return (self.user + self.system) * GIB / self.size


def _cpu_times(pid: int) -> tuple[float, float]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def dd_copy(src: Path, dest: Path) -> Cost:
    """`dd bs=1M conv=fsync` of src to a new file; its wall time and CPU time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    cmd = ["dd", f"if={src}", f"of={dest}", "bs=1M", "conv=fsync", "status=none"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise BenchError(f"dd failed ({proc.returncode}): {proc.stderr.strip()}")
    size = dest.stat().st_size
    dest.unlink()
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return Cost(size, seconds, user, system)


def _measured(pid: int, size: int, transfer: Callable[[], T]) -> tuple[Cost, T]:
    """`transfer()`'s wall time and the CPU time process `pid` spent meanwhile."""
    user0, system0 = _cpu_times(pid)
    started = time.monotonic()
    result = transfer()
    seconds = time.monotonic() - started
    user1, system1 = _cpu_times(pid)
    return Cost(size, seconds, user1 - user0, system1 - system0), result


def filesvc_big_upload(server: FilesvcServer, src: Path, sha256: str, work: Path) -> Cost:
    size = src.stat().st_size
    cost, (_, file_id) = _measured(server.pid, size, lambda: server.upload_raw(src, sha256, work))
    server.delete(file_id)
    return cost


def sink_upload(sink: SocketSink, src: Path, sha256: str, work: Path) -> Cost:
    cost, _ = _measured(sink.pid, src.stat().st_size, lambda: sink.upload(src, sha256, work))
    return cost


def filesvc_parallel_uploads(server: FilesvcServer, small: Path, work: Path, run: int) -> Cost:
    """UPLOADS_PER_ROUND raw uploads of `small`, PARALLEL at a time, by one curl."""
    config = work / "parallel.curl"
    base = f"http://127.0.0.1:{server.port}/api/v1/files/raw"
    lines = [f'header = "{server.auth_header}"']
    lines.append('header = "Content-Type: application/octet-stream"')
    for index in range(UPLOADS_PER_ROUND):
        lines += [f'upload-file = "{small}"', f'url = "{base}/p{run}-{index}.bin"']
        lines.append('output = "/dev/null"')
    config.write_text("\n".join(lines) + "\n")
    cmd = ["curl", "-sS", "--parallel", "--parallel-immediate", "--parallel-max", str(PARALLEL)]
    cmd += ["--max-time", str(CURL_MAX_TIME_S), "-K", str(config)]
    cmd += ["-w", "%{http_code} %{size_upload}\\n"]
    size = small.stat().st_size
    cost, proc = _measured(
        server.pid,
        size * UPLOADS_PER_ROUND,
        lambda: subprocess.run(cmd, capture_output=True, text=True, check=False),
    )
    if proc.returncode != 0:
        raise BenchError(f"curl --parallel failed ({proc.returncode}): {proc.stderr[-500:]}")
    results = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    bad = [r for r in results if r != ["201", str(size)]]
    if len(results) != UPLOADS_PER_ROUND or bad:
        raise BenchError(f"parallel uploads: {len(results)} answers, unexpected: {bad[:5]}")
    return cost


def _summary(costs: list[Cost]) -> dict[str, Any]:
    return {
        "mb_s": round(statistics.median(c.mb_s for c in costs), 1),
        "cpu_s_per_gib": round(statistics.median(c.cpu_s_per_gib for c in costs), 2),
        "user_s_per_gib": round(statistics.median(c.user * GIB / c.size for c in costs), 2),
        "system_s_per_gib": round(statistics.median(c.system * GIB / c.size for c in costs), 2),
        "runs_mb_s": [round(c.mb_s, 1) for c in costs],
        "runs_cpu_s_per_gib": [round(c.cpu_s_per_gib, 2) for c in costs],
    }


def run_upload_bench(
    filesvc_bin: Path, root: Path, src: Path, sha256: str, repeat: int
) -> dict[str, Any]:
    """dd, the socket sink, the big raw upload and the parallel small ones on a fresh
    filesvc, `repeat` times each, the first three taking turns at going first."""
    work = root / "uploads-work"
    work.mkdir()
    small = work / "one-mib.bin"
    make_test_file(small, MIB)
    server = FilesvcServer(filesvc_bin, root / "uploads-filesvc")
    sink = SocketSink(root / "uploads-sink")
    big_cases = ["dd", "socket_sink", "filesvc_raw"]
    costs: dict[str, list[Cost]] = {name: [] for name in [*big_cases, "filesvc_64x1mib"]}
    try:
        server.start()
        sink.start()
        for run in range(repeat):
            turn = run % len(big_cases)
            order = big_cases[turn:] + big_cases[:turn]
            for case in [*order, "filesvc_64x1mib"]:
                ready_to_write(src, work)
                if case == "dd":
                    cost = dd_copy(src, work / "dd.out")
                elif case == "socket_sink":
                    cost = sink_upload(sink, src, sha256, work)
                elif case == "filesvc_raw":
                    cost = filesvc_big_upload(server, src, sha256, work)
                else:
                    cost = filesvc_parallel_uploads(server, small, work, run)
                costs[case].append(cost)
                log(
                    f"  {case:<16} {cost.mb_s:8.1f} MB/s  {cost.cpu_s_per_gib:5.2f} CPU-s/GiB "
                    f"(user {cost.user:.2f} s, system {cost.system:.2f} s)"
                )
        # Resident set: its high-water mark over every case, and what the last burst of
        # small uploads left (their bytes freed, or still held).
        rss_mib = {
            "start": server.startup_rss_kib / 1024,
            "peak": server.peak_rss_kib() / 1024,
            "after": status_kib(server.pid, "VmRSS") / 1024,
        }
    finally:
        sink.stop()
        server.stop()
    report: dict[str, Any] = {name: _summary(runs) for name, runs in costs.items()}
    report["server_rss_mib"] = {name: round(mib, 1) for name, mib in rss_mib.items()}
    raw, dd, many = report["filesvc_raw"]["mb_s"], report["dd"]["mb_s"], report["filesvc_64x1mib"]
    report["raw_vs_dd"] = round(raw / dd, 3)
    report["raw_vs_dd_target"] = DD_TARGET
    report["sink_vs_dd"] = round(report["socket_sink"]["mb_s"] / dd, 3)
    report["raw_vs_sink"] = round(raw / report["socket_sink"]["mb_s"], 3)
    report["parallel_vs_raw"] = round(many["mb_s"] / raw, 3)
    report["parallel_vs_raw_target"] = PARALLEL_TARGET
    report["file_mib"] = src.stat().st_size // MIB
    report["parallel"] = {"in_flight": PARALLEL, "uploads_per_run": UPLOADS_PER_ROUND}
    return report


def render_upload_table(report: dict[str, Any]) -> str:
    rows = [
        f"Durable writes ({report['file_mib']} MiB file; 64 x 1 MiB: "
        f"{report['parallel']['uploads_per_run']} uploads, {PARALLEL} in flight)",
        f"{'case':<18}{'MB/s':>9}{'CPU-s/GiB':>11}{'user':>7}{'system':>8}",
    ]
    for name in ("dd", "socket_sink", "filesvc_raw", "filesvc_64x1mib"):
        row = report[name]
        rows.append(
            f"{name:<18}{row['mb_s']:>9.1f}{row['cpu_s_per_gib']:>11.2f}"
            f"{row['user_s_per_gib']:>7.2f}{row['system_s_per_gib']:>8.2f}"
        )

    def verdict(value: float, target: float) -> str:
        return "ok" if value >= target else "MISS"

    ratio, target = report["raw_vs_dd"], report["raw_vs_dd_target"]
    rows.append(
        f"filesvc raw / dd conv=fsync: {ratio:.2f} (target >= {target}) {verdict(ratio, target)}"
    )
    rows.append(
        f"socket sink / dd conv=fsync: {report['sink_vs_dd']:.2f} (bare Python, no framework); "
        f"filesvc raw / socket sink: {report['raw_vs_sink']:.2f}"
    )
    ratio, target = report["parallel_vs_raw"], report["parallel_vs_raw_target"]
    rows.append(
        f"64 x 1 MiB / one big upload: {ratio:.2f} (target >= {target}) {verdict(ratio, target)}"
    )
    rss = report["server_rss_mib"]
    rows.append(
        f"server RSS: {rss['start']:.1f} MiB at start, peak {rss['peak']:.1f}, "
        f"{rss['after']:.1f} after the last 64 x 1 MiB"
    )
    return "\n".join(rows)
