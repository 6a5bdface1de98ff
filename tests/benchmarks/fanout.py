"""SSE fan-out: N subscribers (1,000 by default) on one worker watch one upload.

Each subscriber is a plain HTTP/1.1 connection from this process's event loop, reading
the stream line by line. An event's delivery latency is the moment its `data:` line is
read here minus its `time` (the server's clock when it published it; same machine, same
clock), so it includes the broker, the fan-out, the framing and this client's own loop.
The server's peak RSS is read from VmHWM, reset right before the subscribers connect.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from tests.benchmarks.common import BenchError, log
from tests.benchmarks.filesvc_server import FilesvcServer

TARGET_P99_MS = 250.0
TARGET_RSS_MIB = 300.0
# The upload's pace: a 1 GiB file takes about three and a half seconds (some 35 progress
# events for every subscriber) while the server also stores and hashes it.
UPLOAD_RATE = "300M"
CONNECT_TIMEOUT_S = 60.0
TIME_FIELD = b'"time":'


class Subscriber:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.complete = False
        self.status = 0

    async def run(self, port: int, path: str, token: str, ready: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                "Accept: text/event-stream\r\n\r\n".encode()
            )
            await writer.drain()
            status_line = await reader.readline()
            self.status = int(status_line.split()[1])
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            ready.set()
            # Whole chunks, not lines: this client's own loop should add as little as it can
            # to what is measured. Only the server's time stamp of each event is read.
            pending = b""
            while chunk := await reader.read(65536):
                now = time.time()
                frames = (pending + chunk).split(b"\n\n")
                pending = frames.pop()
                for frame in frames:
                    at = frame.find(TIME_FIELD)
                    if at < 0:
                        continue  # retry:, pending state, ping
                    stamp = frame[at + len(TIME_FIELD) :].split(b",", 1)[0].split(b"}", 1)[0]
                    self.latencies.append(now - float(stamp))
                    # (HTTP chunk sizes sit between frames: look inside, not at the start.)
                    if b"event: complete" in frame or b"event: failed" in frame:
                        self.complete = b"event: complete" in frame
                        return
        finally:
            writer.close()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _fan_out(
    server: FilesvcServer, src: Path, sha256: str, work: Path, count: int
) -> dict[str, Any]:
    transfer_id = f"fanout-{uuid.uuid4().hex}"
    path = f"/api/v1/transfers/{transfer_id}/events"
    subscribers = [Subscriber() for _ in range(count)]
    ready = [asyncio.Event() for _ in range(count)]
    tasks = [
        asyncio.create_task(s.run(server.port, path, server.token, r))
        for s, r in zip(subscribers, ready, strict=True)
    ]
    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), CONNECT_TIMEOUT_S)
    log(f"  {count} subscribers connected in {time.monotonic() - started:.1f} s")
    refused = [s.status for s in subscribers if s.status != 200]
    if refused:
        raise BenchError(f"{len(refused)} subscribers refused, e.g. HTTP {refused[0]}")
    await asyncio.sleep(1.0)  # every stream subscribed and idle
    rss_connected_kib = server.peak_rss_kib()
    await asyncio.to_thread(
        server.upload_raw, src, sha256, work, transfer_id, ("--limit-rate", UPLOAD_RATE)
    )
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    latencies = [latency for s in subscribers for latency in s.latencies]
    if not latencies or not all(s.complete for s in subscribers):
        raise BenchError("not every subscriber got the transfer's complete event")
    per_subscriber = statistics.median(len(s.latencies) for s in subscribers)
    return {
        "subscribers": count,
        "events_per_subscriber": per_subscriber,
        "deliveries": len(latencies),
        "latency_median_ms": round(statistics.median(latencies) * 1000, 1),
        "latency_p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
        "latency_max_ms": round(max(latencies) * 1000, 1),
        "target_p99_ms_max": TARGET_P99_MS,
        "rss_with_subscribers_mib": round(rss_connected_kib / 1024, 1),
    }


def run_fanout(filesvc_bin: Path, root: Path, src: Path, sha256: str, count: int) -> dict[str, Any]:
    """A fresh single-worker server (its stream cap raised for one user's N streams)."""
    server = FilesvcServer(
        filesvc_bin, root / "fanout", {"FILESVC_MAX_STREAMS_PER_USER": str(count + 10)}
    )
    try:
        server.start()
        server.reset_peak_rss()
        log(f"SSE fan-out: {count} subscribers, one upload of {src.stat().st_size >> 20} MiB")
        result = asyncio.run(_fan_out(server, src, sha256, root / "work", count))
        peak_mib = server.peak_rss_kib() / 1024
        result["peak_rss_mib"] = round(peak_mib, 1)
        # Other load on the machine stalls the one worker and shows in the tail latency.
        result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        result["target_rss_mib_max"] = TARGET_RSS_MIB
        result["pass"] = result["latency_p99_ms"] < TARGET_P99_MS and peak_mib < TARGET_RSS_MIB
        return result
    finally:
        server.stop()
