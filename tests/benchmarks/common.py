"""What every part of the benchmark shares: its error, its log line, sizes, the repo root."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHUNK = 8 * 1024 * 1024
MIB = 1024 * 1024


class BenchError(RuntimeError):
    """Something broke (wrong status, wrong hash, a server that did not start)."""


def log(message: str) -> None:
    print(message, flush=True)
