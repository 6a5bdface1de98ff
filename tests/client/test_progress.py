"""Progress on a terminal (rich) and in a log (plain lines)."""

from __future__ import annotations

import io

from rich.console import Console

from filesvc.client.progress import PlainDisplay, RichDisplay, human

MiB = 1024 * 1024


def test_plain_lines_every_ten_percent() -> None:
    out = io.StringIO()
    with PlainDisplay(out) as display:
        bar = display.bar("a.bin", 10 * MiB)
        for _ in range(10):
            bar.advance(MiB)
    lines = out.getvalue().splitlines()
    assert lines[0] == "a.bin: 10% (1.0 MiB of 10.0 MiB)"
    assert lines[-1] == "a.bin: 100% (10.0 MiB of 10.0 MiB)"
    assert len(lines) == 10


def test_a_bar_starts_where_an_earlier_run_stopped() -> None:
    out = io.StringIO()
    bar = PlainDisplay(out).bar("a.bin", 10 * MiB, completed=5 * MiB)
    bar.advance(MiB)
    assert out.getvalue() == "a.bin: 60% (6.0 MiB of 10.0 MiB)\n"


def test_rich_shows_names_as_text_not_markup() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with RichDisplay(console) as display:
        bar = display.bar("[/] and [red]x", 100)
        bar.advance(100)
    assert "[/] and [red]x" in out.getvalue()


def test_human_sizes() -> None:
    assert [human(0), human(1023), human(1536), human(5 * MiB)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 MiB",
    ]
