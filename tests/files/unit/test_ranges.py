from __future__ import annotations

import itertools
import random

import pytest

from filesvc.errors import RangeNotSatisfiable
from filesvc.files.ranges import MAX_RANGES, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, [(0, 1)]),
        ("bytes=0-9", 10, [(0, 10)]),
        ("bytes=5-", 10, [(5, 10)]),
        ("bytes=9-", 10, [(9, 10)]),
        ("bytes=-5", 10, [(5, 10)]),
        ("bytes=-1", 10, [(9, 10)]),
        ("bytes=-50", 10, [(0, 10)]),  # suffix longer than the body: all of it
        ("bytes=5-500", 10, [(5, 10)]),  # end beyond the body is clamped
        ("bytes=0-1,-0", 10, [(0, 2)]),  # -0 is skipped when another range is satisfiable
        ("bytes=0-1,20-30", 10, [(0, 2)]),  # unsatisfiable parts are dropped
        ("BYTES=0-1", 10, [(0, 2)]),
    ],
)
def test_single_and_suffix_ranges(header: str, size: int, expected: list[tuple[int, int]]) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-4,2-7", [(0, 8)]),  # overlapping
        ("bytes=0-4,5-9", [(0, 10)]),  # adjacent
        ("bytes=0-1,1-2,2-3", [(0, 4)]),
        ("bytes=0-2,-3", [(0, 3), (17, 20)]),
        ("bytes=0-9,2-3", [(0, 10)]),  # contained
        ("bytes=10-11,0-1,5-6", [(0, 2), (5, 7), (10, 12)]),  # unsorted
        ("bytes=15-,-10", [(10, 20)]),  # suffix and open range overlap
    ],
)
def test_multiple_ranges_sorted_and_merged(header: str, expected: list[tuple[int, int]]) -> None:
    assert parse_range(header, 20) == expected


@pytest.mark.parametrize(
    "header",
    [
        " bytes = 0-1 ",
        "bytes=0-1 , 4-5",
        "bytes= 0 - 1,4 -5 ",
        "bytes=\t0-1,\t4-5",
    ],
)
def test_whitespace_is_tolerated(header: str) -> None:
    result = parse_range(header, 10)
    assert result is not None
    assert result[0] == (0, 2)


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=10-", 10),
        ("bytes=10-20", 10),
        ("bytes=100-200,50-60", 10),
        ("bytes=-0", 10),  # a zero-length suffix alone selects nothing
        ("bytes=0-0", 0),
        ("bytes=0-", 0),
        ("bytes=-0", 0),
        ("bytes=-5", 0),  # nothing to send from an empty body
        ("bytes=-1", 0),
        ("bytes=-5,0-", 0),
    ],
)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as excinfo:
        parse_range(header, size)
    assert excinfo.value.status_code == 416
    assert excinfo.value.headers == {"Content-Range": f"bytes */{size}"}


@pytest.mark.parametrize(
    "header",
    [
        "bytes=abc",
        "bytes=a-b",
        "bytes=5-1",  # last before first: invalid, ignored
        "bytes=0-1,5-1",  # one invalid part spoils the whole header
        "items=0-1",
        "0-1",
        "bytes",
        "",
        "bytes=",
        "bytes=-",
        "bytes=0-1,",
        "bytes=--5",
        "bytes=-5-",
        "bytes=+1-2",
        "bytes=0x1-2",
        "bytes=1.5-2",
        "bytes=\u0661-\u0662",  # Arabic-Indic digits pass str.isdigit()
        "bytes=\u00b2-\u00b3",  # superscripts too
        "bytes=\uff11-\uff12",  # and fullwidth digits
        "bytes=0-" + "9" * 5000,
        "bytes=" + "9" * 5000 + "-",
        "bytes=-" + "9" * 5000,
        "bytes=0-" + "9" * 20,  # longer than any file, beyond int64
    ],
)
def test_ignored(header: str) -> None:
    assert parse_range(header, 10) is None


def test_too_many_ranges_are_ignored() -> None:
    at_limit = "bytes=" + ",".join(f"{i * 2}-{i * 2}" for i in range(MAX_RANGES))
    over_limit = "bytes=" + ",".join(f"{i * 2}-{i * 2}" for i in range(MAX_RANGES + 1))
    result = parse_range(at_limit, 1000)
    assert result is not None
    assert len(result) == MAX_RANGES
    assert parse_range(over_limit, 1000) is None


def _random_header(rng: random.Random, size: int) -> str:
    parts = []
    for _ in range(rng.randint(1, MAX_RANGES)):
        kind = rng.randrange(3)
        a, b = sorted(rng.randint(0, size + 5) for _ in range(2))
        if kind == 0:
            parts.append(f"{a}-{b}")
        elif kind == 1:
            parts.append(f"{a}-")
        else:
            parts.append(f"-{b}")
    return "bytes=" + ",".join(parts)


@pytest.mark.parametrize("seed", range(300))
def test_result_is_sorted_disjoint_and_within_the_body(seed: int) -> None:
    rng = random.Random(seed)
    # Empty bodies are covered by test_unsatisfiable.
    size = rng.choice([1, 2, 7, 100])
    header = _random_header(rng, size)
    try:
        ranges = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    assert ranges, header
    for start, end in ranges:
        assert 0 <= start < end <= size, (header, size)
    for (_, prev_end), (next_start, _) in itertools.pairwise(ranges):
        # Strictly after: touching ranges should have been merged.
        assert prev_end < next_start, header
