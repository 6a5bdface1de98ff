"""What /proc says about the server process: status fields, its listening socket, its resident
set (sampled in the background; the kernel's high-water mark and how to reset it)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tests.benchmarks.common import BenchError


def proc_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict of field -> value (as text)."""
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def status_kib(pid: int, field: str) -> int:
    """A `... kB` field of /proc/<pid>/status (VmRSS, VmHWM) in KiB."""
    return int(proc_status(pid)[field].split()[0])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` so far, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM of `pid` to its current VmRSS (`5` to clear_refs, Linux 4.0 and later)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError as exc:
        raise BenchError(f"cannot reset VmHWM of pid {pid} via clear_refs: {exc}") from exc


def listening_socket_inode(port: int) -> str | None:
    """The inode of the socket listening on 127.0.0.1:<port>, from /proc/net/tcp."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":  # 0A = TCP_LISTEN
            return fields[9]
    return None


def owns_socket(pid: int, inode: str) -> bool:
    fd_dir = Path(f"/proc/{pid}/fd")
    target = f"socket:[{inode}]"
    for fd in fd_dir.iterdir():
        try:
            if os.readlink(fd) == target:
                return True
        except OSError:
            continue
    return False


class RssSampler:
    """Samples VmRSS of one process every 20 ms in a background thread; keeps the max."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.max_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.max_kib = max(self.max_kib, status_kib(self.pid, "VmRSS"))
                self.samples += 1
            except (OSError, KeyError, ValueError):
                return
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
