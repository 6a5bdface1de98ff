"""tus against `curl -T`: the same 1 GiB file uploaded to /api/v1/uploads in 8 MiB and in
64 MiB chunks (one keep-alive connection, each PATCH's body read from the file in 1 MiB
blocks, as a tus client would) and raw to /files/raw, alternating which goes first.
Target: 64 MiB chunks within 80% of `curl -T`. Local disk only."""

from __future__ import annotations

import http.client
import statistics
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.common import MIB, BenchError, log
from tests.benchmarks.filesvc_server import FilesvcServer
from tests.benchmarks.runner import MB
from tests.benchmarks.transfers import ready_to_write

CHUNK_SIZES = {"tus_8mib": 8 * MIB, "tus_64mib": 64 * MIB}
TARGET_RATIO = 0.80
SEND_BLOCK = MIB


class _Slice:
    """`length` bytes of an open file from its current position, read in blocks."""

    def __init__(self, file: Any, length: int) -> None:
        self._file = file
        self._left = length

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data: bytes = self._file.read(size)
        self._left -= len(data)
        return data


def tus_upload(server: FilesvcServer, src: Path, sha256: str, chunk: int) -> tuple[float, str]:
    """Create an upload and PATCH it in `chunk`-byte pieces; (bytes/s, file id)."""
    size = src.stat().st_size
    auth = {"Authorization": f"Bearer {server.token}", "Tus-Resumable": "1.0.0"}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600, blocksize=SEND_BLOCK)
    started = time.monotonic()
    try:
        conn.request(
            "POST",
            "/api/v1/uploads",
            headers={
                **auth,
                "Upload-Length": str(size),
                "Upload-Metadata": "filename YmlnLmJpbg==",
            },
        )
        created = conn.getresponse()
        created.read()
        location = created.getheader("Location")
        if created.status != 201 or not location:
            raise BenchError(f"tus creation answered {created.status}")
        offset, file_id = 0, None
        with src.open("rb", buffering=0) as file:
            while offset < size:
                length = min(chunk, size - offset)
                headers = {
                    **auth,
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Offset": str(offset),
                    "Content-Length": str(length),
                }
                conn.request("PATCH", location, body=_Slice(file, length), headers=headers)
                answer = conn.getresponse()
                body = answer.read()
                if answer.status != 204:
                    raise BenchError(
                        f"tus PATCH at {offset} answered {answer.status}: {body[:300]!r}"
                    )
                offset = int(answer.getheader("Upload-Offset") or -1)
                file_id = answer.getheader("X-File-Id") or file_id
        elapsed = time.monotonic() - started
    finally:
        conn.close()
    if file_id is None:
        raise BenchError("the last tus PATCH carried no X-File-Id")
    status, body = server._request(
        "GET", f"/api/v1/files/{file_id}", None, {"Authorization": auth["Authorization"]}
    )
    if status != 200 or f'"sha256":"{sha256}"' not in body.decode():
        raise BenchError(f"tus upload stored the wrong bytes: {body[:300]!r}")
    return size / elapsed, file_id


def run_tus_bench(
    server: FilesvcServer, src: Path, sha256: str, work: Path, repeat: int
) -> dict[str, Any]:
    runs: dict[str, list[float]] = {"curl_t": [], **{name: [] for name in CHUNK_SIZES}}
    for run in range(repeat):
        log(f"tus run {run + 1}/{repeat}")
        order = list(runs)
        order = order if run % 2 == 0 else order[::-1]
        for name in order:
            ready_to_write(src, work)
            if name == "curl_t":
                speed, file_id = server.upload_raw(src, sha256, work)
            else:
                speed, file_id = tus_upload(server, src, sha256, CHUNK_SIZES[name])
            server.delete(file_id)
            runs[name].append(speed / MB)
            log(f"  {name:<10} {speed / MB:8.1f} MB/s")
    medians = {name: statistics.median(values) for name, values in runs.items()}
    ratios = {name: medians[name] / medians["curl_t"] for name in CHUNK_SIZES}
    return {
        "median_mb_s": {k: round(v, 1) for k, v in medians.items()},
        "ratio_to_curl_t": {k: round(v, 3) for k, v in ratios.items()},
        "target_ratio_min_64mib": TARGET_RATIO,
        "pass": ratios["tus_64mib"] >= TARGET_RATIO,
        "runs_mb_s": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
    }


def render_tus_table(report: dict[str, Any]) -> str:
    medians, ratios = report["median_mb_s"], report["ratio_to_curl_t"]
    lines = [
        "tus upload (local disk)        MB/s    vs curl -T",
        f"  {'curl -T /files/raw':<22} {medians['curl_t']:8.1f}",
    ]
    for name, label in (("tus_8mib", "tus, 8 MiB chunks"), ("tus_64mib", "tus, 64 MiB chunks")):
        lines.append(f"  {label:<22} {medians[name]:8.1f}    {ratios[name]:.2f}")
    verdict = "PASS" if report["pass"] else "MISS"
    lines.append(f"  target: 64 MiB chunks >= {TARGET_RATIO:.2f} of curl -T: {verdict}")
    return "\n".join(lines)
