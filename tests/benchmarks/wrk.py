"""wrk (Debian's package) as a load generator: a fixed number of connections for a fixed
time, results as JSON from a Lua `done` hook (exact percentiles, not the rounded table),
and uploads of unique names (PUT with a body) from a Lua `request` hook."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks.common import BenchError, log

CONNECTIONS = 16
THREADS = 2
# Answers slower than this count as timeouts, not latencies: well above any target.
TIMEOUT = "10s"

_DONE = """
done = function(summary, latency, requests)
  io.write(string.format(
    "WRK-JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, "
    .. "\\"p99_us\\": %d, \\"max_us\\": %d, \\"status_errors\\": %d, "
    .. "\\"socket_errors\\": %d, \\"timeouts\\": %d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write,
    summary.errors.timeout))
end
"""

# Each wrk thread PUTs <prefix>-<thread>-<n>: every request a new file. The body is random
# per thread, so nothing along the way can recognise a repeat.
_UNIQUE_PUT = """
local threads = 0
setup = function(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
init = function(args)
  prefix = args[1] .. "-" .. tid .. "-"
  math.randomseed(os.time() + tid)
  local bytes = {}
  for i = 1, %(size)d do bytes[i] = string.char(math.random(0, 255)) end
  body = table.concat(bytes)
  n = 0
end
request = function()
  n = n + 1
  return wrk.format("PUT", "%(path)s" .. prefix .. n, headers, body)
end
"""


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    failed: int  # non-2xx/3xx answers, socket errors and timeouts

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str:
    """Path of wrk; installs the Debian package when there is none (as for nginx)."""
    path = shutil.which("wrk")
    if path is not None:
        return path
    log("wrk not on PATH: installing it with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "wrk"]):
        log("$ " + " ".join(cmd))
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            raise BenchError(f"`{' '.join(cmd)}` failed")
    path = shutil.which("wrk")
    if path is None:
        raise BenchError("wrk still not found after apt-get install wrk")
    return path


def put_script(path_prefix: str, size: int) -> str:
    """A wrk script PUTting `size` random bytes to `path_prefix<name>`, a new name each time
    (the name's prefix is wrk's first script argument)."""
    return _UNIQUE_PUT % {"path": path_prefix, "size": size}


def run_wrk(
    url: str,
    work: Path,
    seconds: int,
    headers: dict[str, str] | None = None,
    script: str = "",
    script_args: tuple[str, ...] = (),
) -> WrkResult:
    lua = work / "wrk-script.lua"
    lua.write_text(script + _DONE)
    cmd = [ensure_wrk(), f"-c{CONNECTIONS}", f"-t{THREADS}", f"-d{seconds}s", "--timeout", TIMEOUT]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    cmd += ["-s", str(lua), url, *script_args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise BenchError(f"wrk exited {done.returncode}: {done.stderr[-2000:]}")
    for line in done.stdout.splitlines():
        if line.startswith("WRK-JSON "):
            data = json.loads(line.removeprefix("WRK-JSON "))
            break
    else:
        raise BenchError(f"wrk printed no result: {done.stdout[-2000:]}")
    result = WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        failed=data["status_errors"] + data["socket_errors"] + data["timeouts"],
    )
    if result.failed:
        log(f"  warning: {result.failed} of {result.requests} requests to {url} failed")
    return result
