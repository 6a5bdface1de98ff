"""Progress on stderr: a rich bar per file on a terminal, plain lines anywhere else (logs,
CI, pipes). stdout stays for the results (file ids, paths), one per line."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Protocol, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

PLAIN_STEP_PERCENT = 10
PLAIN_EVERY_SECONDS = 10.0


class Bar(Protocol):
    def advance(self, amount: int) -> None: ...

    def set(self, completed: int) -> None: ...


class Display(Protocol):
    def bar(self, name: str, total: int | None, completed: int = 0) -> Bar: ...

    def note(self, text: str) -> None: ...

    def result(self, text: str) -> None:
        """A line of the command's output proper (stdout), such as a file id."""

    def __enter__(self) -> Display: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# --- a terminal ---------------------------------------------------------------------


class _RichBar:
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def advance(self, amount: int) -> None:
        self._progress.advance(self._task, amount)

    def set(self, completed: int) -> None:
        self._progress.update(self._task, completed=completed)


class RichDisplay:
    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}", justify="left"),
            BarColumn(bar_width=None),
            TextColumn("{task.percentage:>5.1f}%"),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            expand=True,
            # Results go to the real stdout, which may be a pipe: `ID=$(filesvc upload f)`.
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def bar(self, name: str, total: int | None, completed: int = 0) -> Bar:
        # The name is text, not markup: a file called "[red]x" or "[/]" must show as it is.
        task = self._progress.add_task(escape(name), total=total, completed=completed)
        return _RichBar(self._progress, task)

    def note(self, text: str) -> None:
        self._progress.console.print(text, markup=False, highlight=False)

    def result(self, text: str) -> None:
        if sys.stdout.isatty():  # the bars' terminal too: print above them, not through them
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    def __enter__(self) -> RichDisplay:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()


# --- anything else: plain lines -----------------------------------------------------


class _PlainBar:
    """`name: 10% (10.0 MiB of 100.0 MiB)` every 10%, and at least every 10 seconds."""

    def __init__(self, display: PlainDisplay, name: str, total: int | None, completed: int) -> None:
        self._display = display
        self._name = name
        self._total = total
        self._done = completed
        self._reported_step = self._step()
        self._reported_at = time.monotonic()

    def _step(self) -> int:
        if not self._total:
            return 0
        return self._done * 100 // self._total // PLAIN_STEP_PERCENT

    def advance(self, amount: int) -> None:
        self._done += amount
        step, now = self._step(), time.monotonic()
        if step != self._reported_step or now - self._reported_at >= PLAIN_EVERY_SECONDS:
            self._reported_step, self._reported_at = step, now
            self._display.note(f"{self._name}: {self._describe()}")

    def set(self, completed: int) -> None:
        self._done = completed

    def _describe(self) -> str:
        if not self._total:
            return human(self._done)
        percent = self._done * 100 // self._total
        return f"{percent}% ({human(self._done)} of {human(self._total)})"


class PlainDisplay:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def bar(self, name: str, total: int | None, completed: int = 0) -> Bar:
        return _PlainBar(self, name, total, completed)

    def note(self, text: str) -> None:
        print(text, file=self._stream or sys.stderr, flush=True)

    def result(self, text: str) -> None:
        print(text, flush=True)

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


def open_display() -> Display:
    console = Console(stderr=True)
    if console.is_terminal and not console.is_dumb_terminal:
        return RichDisplay(console)
    return PlainDisplay()
