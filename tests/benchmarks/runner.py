"""The timed runs: every upload and download against each server, checked and recorded, with
the same page cache and disk state for both and the server going first alternating."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.benchmarks.common import log
from tests.benchmarks.filesvc_server import FilesvcServer
from tests.benchmarks.nginx import NginxReference
from tests.benchmarks.transfers import settle_disk, warm_page_cache

MB = 1_000_000


@dataclass
class Bench:
    """Everything one benchmark run works with."""

    src: Path
    sha256: str
    work: Path
    nginx: NginxReference
    filesvc: FilesvcServer | None
    runs: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    file_id: str = ""

    def record(self, server: str, measurement: str, bytes_per_s: float) -> None:
        mb_s = bytes_per_s / MB
        self.runs.setdefault(server, {}).setdefault(measurement, []).append(mb_s)
        log(f"  {server:<8} {measurement:<17} {mb_s:10.1f} MB/s")


def prepare_upload(bench: Bench) -> None:
    """Same for both servers: source file in the page cache, no dirty pages pending."""
    warm_page_cache(bench.src)
    settle_disk()


def server_order(bench: Bench, run: int) -> list[str]:
    """nginx first on odd runs, filesvc first on even ones: neither always goes first."""
    names = ["nginx"] if bench.filesvc is None else ["nginx", "filesvc"]
    return names if run % 2 == 0 else names[::-1]


def timed_upload(bench: Bench, server: str, measurement: str) -> None:
    """One upload. Both servers then drop what they stored (the nginx sink its body file,
    filesvc the new file via DELETE) except the first filesvc file, kept for downloads."""
    prepare_upload(bench)
    if server == "nginx":
        speed = getattr(bench.nginx, measurement)(bench.src, bench.work)
    else:
        assert bench.filesvc is not None
        upload: Callable[[Path, str, Path], tuple[float, str]] = getattr(bench.filesvc, measurement)
        speed, file_id = upload(bench.src, bench.sha256, bench.work)
        if bench.file_id:
            bench.filesvc.delete(file_id)
        else:
            bench.file_id = file_id
    bench.record(server, measurement, speed)


def run_uploads(bench: Bench, run: int) -> None:
    for measurement in ("upload_multipart", "upload_raw"):
        for server in server_order(bench, run):
            timed_upload(bench, server, measurement)


def warm_downloads(bench: Bench) -> None:
    """One untimed download from each server, hashed: checks the bytes and warms the cache."""
    bench.nginx.verify_download(bench.src, bench.sha256)
    if bench.filesvc is not None:
        bench.filesvc.verify_download(bench.file_id, bench.src, bench.sha256)
    log("  warm-up downloads: sha256 matches for every server")


def _run_reads(
    bench: Bench, run: int, measurement: str, read: Callable[[FilesvcServer], float]
) -> None:
    """filesvc's read of the kept file against nginx sending the same bytes (sendfile)."""
    for server in server_order(bench, run):
        settle_disk()
        if server == "nginx":
            speed = bench.nginx.download(bench.src)
        else:
            assert bench.filesvc is not None
            speed = read(bench.filesvc)
        bench.record(server, measurement, speed)


def run_downloads(bench: Bench, run: int) -> None:
    _run_reads(bench, run, "download", lambda filesvc: filesvc.download(bench.file_id, bench.src))


def run_archives(bench: Bench, run: int) -> None:
    """A zip of the file against nginx sending the plain bytes: what building it costs."""
    _run_reads(bench, run, "archive", lambda filesvc: filesvc.archive(bench.file_id, bench.src))


def run_all(bench: Bench, repeat: int) -> None:
    for run in range(repeat):
        log(f"run {run + 1}/{repeat}")
        run_uploads(bench, run)
        if run == 0:
            warm_downloads(bench)
        run_downloads(bench, run)
        run_archives(bench, run)
