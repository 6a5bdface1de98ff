"""Throughput and memory benchmark of filesvc against an nginx reference (`make bench`),
then of filesvc on S3 (SeaweedFS) against boto3 direct (see tests/benchmarks/s3.py).

    .venv/bin/python -m tests.benchmarks.run [--size-mib 1024] [--repeat 3] [--nginx-only]
                                             [--tracking-repeat 5] [--subscribers 1000]
        [--skip-s3 | --s3-only | --tus-only | --uploads-only]
        [--skip-cluster | --cluster-only] [--cluster-seconds 10]
        [--skip-small | --small-only] [--small-seconds 10]

Makes a random test file (temp dir on disk, not tmpfs), starts nginx (foreground child,
generated config, worker_processes 1, installed with apt-get if missing) and a real
`filesvc serve` (one worker, so the spawned pid is the server) on free loopback ports.
Each run does a multipart upload (`curl -F`), a raw upload (`curl -T`), a download and a
zip archive of the file (`GET /archive`, against nginx sending the same bytes) against
both; nginx's upload side is a sink that really writes the body to disk (checked
after every upload), its download uses sendfile. Before each upload the source file is
read into the page cache and `sync` flushes the previous run's writes, the same for both
servers; what each upload stored is dropped again (sink body file / DELETE), except one
filesvc file kept for the downloads; the server going first alternates between runs.

Then filesvc alone: the raw upload and the download with and without an `X-Transfer-Id`
(tracking must cost under 10%), and the SSE fan-out (tests/benchmarks/fanout.py): 1,000
subscribers on one worker watching one upload, with delivery latency and peak RSS.

Then the durable writes (tests/benchmarks/uploads.py): `dd conv=fsync` of the file against
filesvc's raw upload of it and against a bare Python socket sink's (socket_sink.py), and 64
concurrent 1 MiB uploads, with the server's CPU-seconds per GiB; `--uploads-only` runs only
these. Then tus (tests/benchmarks/tus.py): a 1 GiB upload to /api/v1/uploads in 8 MiB and
64 MiB chunks against `curl -T` to /files/raw, local disk; `--tus-only` runs just that.

Then the cluster figure (tests/benchmarks/cluster.py): uploads per second and p99 latency,
4 KiB and 1 MiB bodies, 64 clients (wrk), through nginx in front of two instances of
`deploy/local-cluster` against one instance directly. Last the small requests
(tests/benchmarks/small_files.py): wrk against /healthz, a metadata read, a 4 KiB download
and 4 KiB uploads, on SQLite and PostgreSQL, with one and two workers, against copyparty.

Prints the medians (MB/s, 1 MB = 10^6 bytes), the filesvc/nginx ratios and the server's
peak RSS (max of VmHWM and sampled VmRSS) against the targets, and writes
bench-results/latest.json. The peak RSS checked is the whole process's since it started;
the peak during the transfers alone (VmHWM reset right before the first timed transfer)
is printed next to it. Exit 0 also on a MISS; non-zero only when something broke
(wrong status, wrong size or hash, a server that did not start).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from tests.benchmarks.cluster import render_cluster_table, run_cluster_bench
from tests.benchmarks.common import MIB, REPO, BenchError, log
from tests.benchmarks.fanout import run_fanout
from tests.benchmarks.filesvc_server import FilesvcServer
from tests.benchmarks.nginx import NginxReference, ensure_nginx
from tests.benchmarks.procfs import RssSampler
from tests.benchmarks.report import build_report, memory_report, render_table, write_json
from tests.benchmarks.runner import Bench, run_all
from tests.benchmarks.s3 import render_s3_table, run_s3_bench
from tests.benchmarks.small_files import render_small_table, run_small_files
from tests.benchmarks.tracking import run_tracking
from tests.benchmarks.transfers import filesystem_type, make_test_file
from tests.benchmarks.tus import render_tus_table, run_tus_bench
from tests.benchmarks.uploads import render_upload_table, run_upload_bench


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="test file size (1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (3)")
    parser.add_argument(
        "--tmp-dir", type=Path, default=None, help="where the temp dir goes (on a disk)"
    )
    parser.add_argument(
        "--filesvc-bin", type=Path, default=REPO / ".venv" / "bin" / "filesvc", help="CLI"
    )
    parser.add_argument(
        "--nginx-only", action="store_true", help="only the nginx reference (no filesvc)"
    )
    parser.add_argument(
        "--tracking-repeat", type=int, default=5, help="tracked/untracked pairs (5)"
    )
    parser.add_argument(
        "--subscribers", type=int, default=1000, help="SSE fan-out subscribers (1000; 0 skips)"
    )
    parser.add_argument("--skip-s3", action="store_true", help="no S3 (SeaweedFS) part")
    parser.add_argument("--s3-only", action="store_true", help="only the S3 (SeaweedFS) part")
    parser.add_argument("--skip-cluster", action="store_true", help="no cluster figure")
    parser.add_argument(
        "--cluster-only", action="store_true", help="only the cluster figure (nginx + 2 instances)"
    )
    parser.add_argument("--cluster-seconds", type=int, default=10, help="per wrk run (10)")
    parser.add_argument("--cluster-repeat", type=int, default=2, help="wrk runs per target (2)")
    parser.add_argument("--tus-only", action="store_true", help="only tus against curl -T")
    parser.add_argument("--skip-small", action="store_true", help="no small-request part")
    parser.add_argument("--small-only", action="store_true", help="only the small requests")
    parser.add_argument(
        "--small-seconds", type=int, default=10, help="seconds per small-request case (10)"
    )
    parser.add_argument(
        "--uploads-only", action="store_true", help="only dd against big and 64 parallel uploads"
    )
    args = parser.parse_args(argv)
    if args.tus_only or args.nginx_only:
        args.skip_s3 = args.skip_cluster = args.skip_small = True
    if args.size_mib < 1 or args.repeat < 1:
        parser.error("--size-mib and --repeat must be at least 1")
    return args


def raise_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def make_workspace(stack: contextlib.ExitStack, tmp_dir: Path | None) -> Path:
    root = Path(tempfile.mkdtemp(prefix="filesvc-bench-", dir=tmp_dir))
    stack.callback(shutil.rmtree, root, ignore_errors=True)
    fstype = filesystem_type(root)
    log(f"temp dir {root} ({fstype})")
    if fstype in {"tmpfs", "ramfs"}:
        raise BenchError(f"{root} is on {fstype}: pass --tmp-dir on a real disk")
    return root


def make_source(root: Path, size_mib: int) -> tuple[Path, str]:
    files = root / "files"
    files.mkdir()
    src = files / "big.bin"
    started = time.monotonic()
    sha256 = make_test_file(src, size_mib * MIB)
    log(f"test file {src}: {size_mib} MiB random, sha256 {sha256}")
    log(f"  written in {time.monotonic() - started:.1f} s")
    return src, sha256


def start_servers(
    args: argparse.Namespace, stack: contextlib.ExitStack, root: Path, src: Path, sha256: str
) -> Bench:
    nginx = NginxReference(ensure_nginx(), root / "nginx", src.parent)
    stack.callback(nginx.stop)
    nginx.start()
    filesvc = None
    if not args.nginx_only:
        if not args.filesvc_bin.exists():
            raise BenchError(f"{args.filesvc_bin} missing: `pip install -e .` or --nginx-only")
        filesvc = FilesvcServer(args.filesvc_bin, root / "filesvc")
        stack.callback(filesvc.stop)
        filesvc.start()
    work = root / "work"
    work.mkdir()
    return Bench(src, sha256, work, nginx, filesvc)


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        root = make_workspace(stack, args.tmp_dir)
        if args.cluster_only:
            return {"cluster": run_cluster_bench(root, args.cluster_seconds, args.cluster_repeat)}
        if args.small_only:
            return {"small_files": run_small_files(root, args.filesvc_bin, args.small_seconds)}
        src, sha256 = make_source(root, args.size_mib)
        if args.tus_only:
            return {"tus": tus_benchmark(args, root, src, sha256)}
        if args.uploads_only:
            return {"uploads": upload_benchmark(args, root, src, sha256)}
        report = {} if args.s3_only else local_benchmark(args, root, src, sha256)
        if not args.s3_only and not args.nginx_only:
            report["uploads"] = upload_benchmark(args, root, src, sha256)
            report["tus"] = tus_benchmark(args, root, src, sha256)
        if not args.skip_s3:
            report["s3"] = run_s3_bench(args, root, src, sha256, args.filesvc_bin)
        if not args.skip_cluster and not args.s3_only:
            report["cluster"] = run_cluster_bench(root, args.cluster_seconds, args.cluster_repeat)
        if not (args.skip_small or args.s3_only or args.nginx_only):
            report["small_files"] = run_small_files(root, args.filesvc_bin, args.small_seconds)
        return report


def tus_benchmark(args: argparse.Namespace, root: Path, src: Path, sha256: str) -> dict[str, Any]:
    """filesvc alone, with the machine to itself: tus chunks against curl -T."""
    with contextlib.ExitStack() as stack:
        server = FilesvcServer(args.filesvc_bin, root / "filesvc-tus")
        stack.callback(server.stop)
        server.start()
        work = root / "work-tus"
        work.mkdir()
        return run_tus_bench(server, src, sha256, work, args.repeat)


def local_benchmark(args: argparse.Namespace, root: Path, src: Path, sha256: str) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        bench = start_servers(args, stack, root, src, sha256)
        sampler = None
        if bench.filesvc is not None:
            sampler = RssSampler(bench.filesvc.pid)
            sampler.start()
            stack.callback(sampler.stop)
            # Last step before the first timed transfer: VmHWM from here covers the transfers.
            bench.filesvc.reset_peak_rss()
        run_all(bench, args.repeat)
        if sampler is not None:
            sampler.stop()
        memory = memory_report(bench.filesvc, sampler)
        report = build_report(args, bench, memory, bench.nginx.binary)
        if bench.filesvc is not None:
            report["tracking"] = run_tracking(bench, args.tracking_repeat)
            bench.filesvc.stop()  # the fan-out gets the machine to itself
            if args.subscribers > 0:
                report["sse_fanout"] = run_fanout(
                    args.filesvc_bin, root, bench.src, bench.sha256, args.subscribers
                )
        return report


def upload_benchmark(
    args: argparse.Namespace, root: Path, src: Path, sha256: str
) -> dict[str, Any]:
    if not args.filesvc_bin.exists():
        raise BenchError(f"{args.filesvc_bin} missing: `pip install -e .`")
    log("durable writes: dd conv=fsync, socket sink, filesvc raw, 64 parallel 1 MiB uploads")
    return run_upload_bench(args.filesvc_bin, root, src, sha256, args.repeat)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.loadavg_at_start = [round(x, 2) for x in os.getloadavg()]
    log(f"load average {args.loadavg_at_start} on {os.cpu_count()} CPUs (other load skews MB/s)")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, raise_on_signal)
    try:
        report = benchmark(args)
    except BenchError as exc:
        log(f"BENCHMARK FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        return 130
    if "comparisons" in report:
        print()
        print(render_table(report))
    if "uploads" in report:
        print()
        print(render_upload_table(report["uploads"]))
    if "s3" in report:
        print()
        print(render_s3_table(report["s3"]))
    if "cluster" in report:
        print()
        print(render_cluster_table(report["cluster"]))
    if "tus" in report:
        print()
        print(render_tus_table(report["tus"]))
    if "small_files" in report:
        print()
        print(render_small_table(report["small_files"]))
    print()
    write_json(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
