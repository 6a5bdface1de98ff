"""Tracked against untracked: the same raw upload and download, with and without an
`X-Transfer-Id`, alternating which goes first; tracking should cost under 10%.

Beside MB/s, the server's CPU-seconds per GiB of each run: single MB/s pairs swing by
±30% on a shared machine, the CPU a transfer costs much less."""

from __future__ import annotations

import statistics
import uuid
from typing import Any

from tests.benchmarks.common import MIB, log
from tests.benchmarks.procfs import cpu_seconds
from tests.benchmarks.runner import MB, Bench, prepare_upload
from tests.benchmarks.transfers import settle_disk

TARGET_RATIO = 0.90


def _upload(bench: Bench, tracked: bool) -> float:
    assert bench.filesvc is not None
    prepare_upload(bench)
    transfer_id = f"bench-{uuid.uuid4().hex}" if tracked else None
    speed, file_id = bench.filesvc.upload_raw(bench.src, bench.sha256, bench.work, transfer_id)
    bench.filesvc.delete(file_id)
    return speed / MB


def _download(bench: Bench, tracked: bool) -> float:
    assert bench.filesvc is not None
    settle_disk()
    transfer_id = f"bench-{uuid.uuid4().hex}" if tracked else None
    return bench.filesvc.download(bench.file_id, bench.src, transfer_id) / MB


def run_tracking(bench: Bench, repeat: int) -> dict[str, Any]:
    assert bench.filesvc is not None
    pid = bench.filesvc.pid
    gib = bench.src.stat().st_size / (1024 * MIB)
    runs: dict[str, dict[str, list[float]]] = {
        "upload_raw": {"untracked": [], "tracked": []},
        "download": {"untracked": [], "tracked": []},
    }
    cpu: dict[str, dict[str, list[float]]] = {
        measurement: {"untracked": [], "tracked": []} for measurement in runs
    }
    for run in range(repeat):
        log(f"tracking run {run + 1}/{repeat}")
        order = (False, True) if run % 2 == 0 else (True, False)
        for measurement, transfer in (("upload_raw", _upload), ("download", _download)):
            for is_tracked in order:
                before = cpu_seconds(pid)
                mb_s = transfer(bench, is_tracked)
                cpu_per_gib = (cpu_seconds(pid) - before) / gib
                kind = "tracked" if is_tracked else "untracked"
                runs[measurement][kind].append(mb_s)
                cpu[measurement][kind].append(cpu_per_gib)
                log(f"  {measurement:<11} {kind:<9} {mb_s:8.1f} MB/s {cpu_per_gib:5.2f} CPU-s/GiB")
    rows: list[dict[str, Any]] = []
    for measurement, by_kind in runs.items():
        untracked = statistics.median(by_kind["untracked"])
        tracked = statistics.median(by_kind["tracked"])
        ratio = tracked / untracked if untracked > 0 else 0.0
        cpu_untracked = statistics.median(cpu[measurement]["untracked"])
        cpu_tracked = statistics.median(cpu[measurement]["tracked"])
        rows.append(
            {
                "measurement": measurement,
                "untracked_mb_s": round(untracked, 1),
                "tracked_mb_s": round(tracked, 1),
                "ratio": round(ratio, 3),
                "target_ratio_min": TARGET_RATIO,
                "pass": ratio >= TARGET_RATIO,
                "runs_mb_s": {k: [round(v, 1) for v in vs] for k, vs in by_kind.items()},
                "untracked_cpu_s_per_gib": round(cpu_untracked, 2),
                "tracked_cpu_s_per_gib": round(cpu_tracked, 2),
                # The tracked runs' extra CPU against the untracked ones': 0.05 = 5% more.
                "cpu_overhead": round(cpu_tracked / cpu_untracked - 1, 3),
            }
        )
    return {"rows": rows}
