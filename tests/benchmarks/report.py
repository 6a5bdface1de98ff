"""The results: medians and filesvc/nginx ratios against the targets, the server's peak RSS
(whole process and during the transfers), the environment; printed as a table and written
to bench-results/latest.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
from datetime import UTC, datetime
from typing import Any

from tests.benchmarks.common import MIB, REPO, log
from tests.benchmarks.filesvc_server import FilesvcServer
from tests.benchmarks.nginx import WORKER_PROCESSES, nginx_version
from tests.benchmarks.procfs import RssSampler
from tests.benchmarks.runner import Bench
from tests.benchmarks.transfers import filesystem_type

RESULTS_PATH = REPO / "bench-results" / "latest.json"
MEASUREMENTS = ("upload_multipart", "upload_raw", "download", "archive")
LABELS = {
    "upload_multipart": "upload multipart (curl -F)",
    "upload_raw": "upload raw (curl -T, PUT)",
    "download": "download (GET content)",
    "archive": "archive zip (GET /archive)",
}
TARGET_RATIO = 0.5
TARGET_RSS_MIB = 150.0


def tool_version(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (proc.stdout or proc.stderr).splitlines()[0].strip()


def comparisons(bench: Bench) -> list[dict[str, Any]]:
    rows = []
    for measurement in MEASUREMENTS:
        nginx = statistics.median(bench.runs["nginx"][measurement])
        filesvc_runs = bench.runs.get("filesvc", {}).get(measurement)
        filesvc = statistics.median(filesvc_runs) if filesvc_runs else None
        ratio = filesvc / nginx if filesvc is not None and nginx > 0 else None
        rows.append(
            {
                "measurement": measurement,
                "nginx_mb_s": round(nginx, 1),
                "filesvc_mb_s": None if filesvc is None else round(filesvc, 1),
                "ratio": None if ratio is None else round(ratio, 3),
                "target_ratio_min": TARGET_RATIO,
                "pass": None if ratio is None else ratio >= TARGET_RATIO,
            }
        )
    return rows


def memory_report(filesvc: FilesvcServer | None, sampler: RssSampler | None) -> dict[str, Any]:
    """Peak RSS of the whole process (checked against the target) and during the transfers.
    VmHWM was reset right before the first timed transfer, and the sampler ran only then."""
    if filesvc is None or sampler is None:
        return {
            "peak_mib": None,
            "transfer_peak_mib": None,
            "target_mib_max": TARGET_RSS_MIB,
            "pass": None,
        }
    transfer_hwm_mib = filesvc.peak_rss_kib() / 1024
    before_reset_mib = filesvc.hwm_before_reset_kib / 1024
    hwm_mib = max(before_reset_mib, transfer_hwm_mib)
    sampled_mib = sampler.max_kib / 1024
    peak = max(hwm_mib, sampled_mib)
    transfer_peak = max(transfer_hwm_mib, sampled_mib)
    return {
        "vmhwm_mib": round(hwm_mib, 1),
        "vmhwm_before_reset_mib": round(before_reset_mib, 1),
        "transfer_vmhwm_mib": round(transfer_hwm_mib, 1),
        "sampled_vmrss_max_mib": round(sampled_mib, 1),
        "rss_samples": sampler.samples,
        "startup_vmrss_mib": round(filesvc.startup_rss_kib / 1024, 1),
        "startup_vmhwm_mib": round(filesvc.startup_hwm_kib / 1024, 1),
        "peak_mib": round(peak, 1),
        "transfer_peak_mib": round(transfer_peak, 1),
        "target_mib_max": TARGET_RSS_MIB,
        "pass": peak < TARGET_RSS_MIB,
    }


def build_report(
    args: argparse.Namespace, bench: Bench, memory: dict[str, Any], nginx_bin: str
) -> dict[str, Any]:
    return {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "file_size_bytes": bench.src.stat().st_size,
        "file_sha256": bench.sha256,
        "repeat": args.repeat,
        "unit": "MB/s, 1 MB = 10^6 bytes; medians of the runs",
        "environment": {
            "nginx": nginx_version(nginx_bin),
            "nginx_worker_processes": WORKER_PROCESSES,
            "curl": tool_version(["curl", "--version"]),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "tmp_filesystem": filesystem_type(bench.src),
            "filesvc_workers": None if bench.filesvc is None else 1,
            "loadavg_at_start": args.loadavg_at_start,
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "comparisons": comparisons(bench),
        "filesvc_peak_rss": memory,
        "runs_mb_s": {
            s: {m: [round(v, 1) for v in r] for m, r in d.items()} for s, d in bench.runs.items()
        },
    }


def fmt(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}"


def verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "MISS")


def render_table(report: dict[str, Any]) -> str:
    env = report["environment"]
    size_mib = report["file_size_bytes"] / MIB
    head = (
        f"filesvc vs nginx {env['nginx']} (worker_processes {env['nginx_worker_processes']}): "
        f"{size_mib:.0f} MiB random file, median of {report['repeat']} runs, "
        "MB/s = 10^6 bytes/s"
    )
    line = f"{'measurement':<28} {'nginx MB/s':>11} {'filesvc MB/s':>13} {'ratio':>7} "
    line += f"{'target':>8}  result"
    out = [head, "nginx upload = sink that writes the body to disk; download = sendfile", "", line]
    out.append("-" * len(line))
    for row in report["comparisons"]:
        out.append(
            f"{LABELS[row['measurement']]:<28} {fmt(row['nginx_mb_s'], 11, 1)} "
            f"{fmt(row['filesvc_mb_s'], 13, 1)} {fmt(row['ratio'], 7, 2)} "
            f"{'>= ' + format(TARGET_RATIO, '.2f'):>8}  {verdict(row['pass'])}"
        )
    mem = report["filesvc_peak_rss"]
    out.append(
        f"{'filesvc peak RSS (MiB)':<28} {'-':>11} {fmt(mem['peak_mib'], 13, 1)} {'-':>7} "
        f"{'< ' + format(TARGET_RSS_MIB, '.0f'):>8}  {verdict(mem['pass'])}"
    )
    if mem["peak_mib"] is not None:
        out.append(
            f"  (whole process: VmHWM {mem['vmhwm_mib']} MiB; during transfers: peak "
            f"{mem['transfer_peak_mib']} MiB, VmHWM since reset {mem['transfer_vmhwm_mib']} MiB, "
            f"max sampled VmRSS {mem['sampled_vmrss_max_mib']} MiB over "
            f"{mem['rss_samples']} samples; after start: VmRSS {mem['startup_vmrss_mib']} MiB, "
            f"VmHWM {mem['startup_vmhwm_mib']} MiB)"
        )
    out += tracking_lines(report) + fanout_lines(report)
    out += ["", f"{'per run, MB/s (run order)':<28} {'nginx':<26} filesvc"]
    runs = report["runs_mb_s"]
    for measurement in MEASUREMENTS:
        nginx = ", ".join(f"{v:.0f}" for v in runs["nginx"][measurement])
        filesvc = ", ".join(f"{v:.0f}" for v in runs.get("filesvc", {}).get(measurement, []))
        out.append(f"{LABELS[measurement]:<28} {nginx:<26} {filesvc or '-'}")
    return "\n".join(out)


def tracking_lines(report: dict[str, Any]) -> list[str]:
    if "tracking" not in report:
        return []
    out = ["", f"{'tracked vs untracked':<28} {'untracked':>11} {'tracked':>13} {'ratio':>7}"]
    for row in report["tracking"]["rows"]:
        out.append(
            f"{row['measurement']:<28} {fmt(row['untracked_mb_s'], 11, 1)} "
            f"{fmt(row['tracked_mb_s'], 13, 1)} {fmt(row['ratio'], 7, 2)} "
            f"{'>= ' + format(row['target_ratio_min'], '.2f'):>8}  {verdict(row['pass'])}"
        )
        out.append(
            f"{'  server CPU-s per GiB':<28} {fmt(row['untracked_cpu_s_per_gib'], 11, 2)} "
            f"{fmt(row['tracked_cpu_s_per_gib'], 13, 2)}  tracking costs "
            f"{row['cpu_overhead']:+.1%} CPU"
        )
    return out


def fanout_lines(report: dict[str, Any]) -> list[str]:
    fanout = report.get("sse_fanout")
    if fanout is None:
        return []
    return [
        "",
        f"SSE fan-out: {fanout['subscribers']} subscribers on one worker, one upload, "
        f"{fanout['events_per_subscriber']:.0f} events each ({fanout['deliveries']} deliveries)",
        f"  delivery latency median {fanout['latency_median_ms']} ms, "
        f"p99 {fanout['latency_p99_ms']} ms (target < {fanout['target_p99_ms_max']:.0f}), "
        f"max {fanout['latency_max_ms']} ms (load average at the end "
        f"{fanout['loadavg_at_end']})",
        f"  server RSS with the subscribers connected {fanout['rss_with_subscribers_mib']} MiB, "
        f"peak {fanout['peak_rss_mib']} MiB (target < {fanout['target_rss_mib_max']:.0f})  "
        f"{verdict(fanout['pass'])}",
    ]


def write_json(report: dict[str, Any]) -> None:
    RESULTS_PATH.parent.mkdir(exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(report, indent=2) + "\n")
    log(f"results written to {RESULTS_PATH}")
