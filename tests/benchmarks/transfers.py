"""The bytes moved: the random test file, page cache and disk state, curl runs and results."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks.common import CHUNK, BenchError

CURL_MAX_TIME_S = 1800


# --- Test data on disk ------------------------------------------------------------------------


def make_test_file(path: Path, size_bytes: int) -> str:
    """Write `size_bytes` random bytes in 8 MiB chunks and return their SHA-256 hex."""
    digest = hashlib.sha256()
    remaining = size_bytes
    with path.open("wb") as out:
        while remaining > 0:
            chunk = os.urandom(min(CHUNK, remaining))
            digest.update(chunk)
            out.write(chunk)
            remaining -= len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def warm_page_cache(path: Path) -> None:
    """Read the whole file once so the next reader gets it from the page cache."""
    with path.open("rb") as src:
        while src.read(CHUNK):
            pass


def settle_disk() -> None:
    """Flush dirty pages left by the previous run so it does not slow the next one."""
    os.sync()


def free_warm_pages(directory: Path, size_bytes: int) -> None:
    """Write `size_bytes` to a scratch file in `directory` and delete it, so the write
    measured next takes page-cache pages that were in use a moment ago.

    On a virtual machine that hands free memory back to its host (free page reporting:
    this machine's kernel has `page_reporting.page_reporting_order=11`), a page left free
    for a couple of seconds faults in from the host at its next use, and a write through
    the page cache then costs several times the CPU. Measured here: `dd conv=fsync` of 1 GiB
    after 5 s idle took 0.79-0.82 s and 0.42 system CPU-s; right after another 1 GiB write
    had been deleted, 0.59-0.64 s and 0.22-0.24. Without this, whichever case ran first in a
    round paid for the cold memory and the second reused what the first freed: dd went
    first in two rounds of three and read 358-371 MB/s there, 1,371 MB/s when second. Now
    each case takes pages that were in use a moment ago, as on a server whose page cache is
    in steady use. It evens the cases out in `--uploads-only` runs. In a full `make bench`,
    after the earlier parts have filled the page cache, it helps less (README, "Durable
    writes")."""
    scratch = directory / "warm-pages.scratch"
    chunk = bytes(CHUNK)
    try:
        with scratch.open("wb") as out:
            for _ in range(0, size_bytes, CHUNK):
                out.write(chunk)
    finally:
        scratch.unlink(missing_ok=True)  # its dirty pages are dropped, never written out


def ready_to_write(src: Path, scratch_dir: Path) -> None:
    """What every measured write of `src` starts from: `src` in the page cache, no dirty
    pages left by the run before, and warm free pages for the copy."""
    warm_page_cache(src)
    settle_disk()
    free_warm_pages(scratch_dir, src.stat().st_size)


def filesystem_type(path: Path) -> str:
    """The type of the mount holding `path` (longest mount-point prefix in /proc/mounts)."""
    best, fstype = "", "unknown"
    resolved = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        mount_point, kind = fields[1], fields[2]
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, fstype = mount_point, kind
    return fstype


# --- curl -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurlResult:
    speed_bps: float
    http_code: int
    size: int
    body: str


def run_curl(args: list[str], write_out: str, body_file: Path | None = None) -> list[str]:
    """Run curl with `-w write_out`; return the whitespace-split write-out fields."""
    cmd = ["curl", "-sS", "--max-time", str(CURL_MAX_TIME_S), *args, "-w", write_out]
    cmd += ["-o", str(body_file) if body_file is not None else os.devnull]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"curl failed ({proc.returncode}): {proc.stderr.strip()} [{cmd}]")
    return proc.stdout.split()


def curl_upload(args: list[str], body_file: Path) -> CurlResult:
    """An upload; the response body is kept in `body_file` for checking."""
    speed, code = run_curl(args, "%{speed_upload} %{http_code} %{size_upload}", body_file)[:2]
    body = body_file.read_text(errors="replace") if body_file.exists() else ""
    return CurlResult(float(speed), int(code), 0, body)


def curl_download(url: str, headers: list[str]) -> CurlResult:
    """A download to /dev/null."""
    hdr_args = [arg for header in headers for arg in ("-H", header)]
    speed, code, size = run_curl(
        [*hdr_args, url], "%{speed_download} %{http_code} %{size_download}"
    )
    return CurlResult(float(speed), int(code), int(size), "")


def download_sha256(url: str, headers: list[str]) -> tuple[str, int]:
    """Download through a pipe, hashing as it arrives; returns (sha256 hex, byte count)."""
    hdr_args = [arg for header in headers for arg in ("-H", header)]
    cmd = ["curl", "-sS", "--fail", "--max-time", str(CURL_MAX_TIME_S), *hdr_args, url]
    digest, count = hashlib.sha256(), 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(CHUNK):
            digest.update(chunk)
            count += len(chunk)
        _, err = proc.communicate()
    if proc.returncode != 0:
        raise BenchError(f"download of {url} failed: {err.decode(errors='replace').strip()}")
    return digest.hexdigest(), count
