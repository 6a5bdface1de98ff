"""What `filesvc gc` and `filesvc scrub` share: findings, a progress bar, durations, and
walking the files table in batches."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from sqlalchemy import select

from filesvc.db import Database
from filesvc.files.models import File

BATCH = 500
_DURATION_RE = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """`0`, `30s`, `15m`, `1h`, `2d` (a bare number is seconds)."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (say 0, 30s, 15m, 1h or 2d)")
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of a report: what was found, where, and what was done about it."""

    action: str  # "removed", "would remove", "missing", "mismatch", …
    kind: str  # "temp file", "orphan blob", "multipart upload", "file", …
    target: str
    size: int | None = None
    note: str = ""

    def line(self) -> str:
        size = f" ({self.size} bytes)" if self.size is not None else ""
        note = f": {self.note}" if self.note else ""
        return f"{self.action} {self.kind} {self.target}{size}{note}"


class Progress:
    """A progress bar on a terminal (stderr), nothing otherwise: findings go to stdout as
    plain lines either way, so logs and pipes get the same report."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)

    @contextmanager
    def bar(self, description: str, total: int | None = None) -> Iterator[Callable[[], None]]:
        """Yield a function that counts one item done."""
        bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self._console,
            transient=True,
            # Prints to stdout meanwhile show above the bar rather than through it.
            redirect_stdout=True,
            disable=not self._console.is_terminal,
        )
        with bar:
            task = bar.add_task(description, total=total)
            yield lambda: bar.advance(task)

    def write(self, line: str) -> None:
        print(line, flush=True)


async def file_rows(db: Database) -> AsyncIterator[list[tuple[str, str, int, str]]]:
    """(id, storage key, size, sha256) of every file, a batch at a time by id; no session
    stays open between batches."""
    last = ""
    while True:
        async with db.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(File.id, File.storage_key, File.size, File.sha256)
                    .where(File.id > last)
                    .order_by(File.id)
                    .limit(BATCH)
                )
            ).all()
        if not rows:
            return
        yield [(r[0], r[1], r[2], r[3]) for r in rows]
        last = rows[-1][0]
