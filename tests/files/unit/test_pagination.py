from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from filesvc.files.errors import InvalidCursor
from filesvc.files.models import File
from filesvc.files.pagination import decode_cursor, encode_cursor
from filesvc.files.schemas import SortField

FILE_ID = "0b7c7c1e-4a7e-4d5e-9a55-0e6c6f1b2a3c"
CREATED = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
ORDERS = ["asc", "desc"]


def make_file(**overrides: Any) -> File:
    values: dict[str, Any] = {
        "id": FILE_ID,
        "name": 'résumé "quoted" 😀.pdf',
        "size": 12345,
        "created_at": CREATED,
    }
    values.update(overrides)
    return File(**values)


def raw_cursor(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        (SortField.created_at, CREATED),
        (SortField.name, 'résumé "quoted" 😀.pdf'),
        (SortField.size, 12345),
    ],
)
def test_round_trip(sort: SortField, order: str, expected: object) -> None:
    cursor = encode_cursor(sort, order, make_file())
    assert cursor.isascii()
    assert "=" not in cursor  # safe in a query string as is
    assert decode_cursor(cursor, sort, order) == (expected, FILE_ID)


def test_round_trip_keeps_other_time_zones_exact() -> None:
    created = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    cursor = encode_cursor(SortField.created_at, "asc", make_file(created_at=created))
    value, _ = decode_cursor(cursor, SortField.created_at, "asc")
    assert value == created


@pytest.mark.parametrize("size", [0, 2**63 - 1])
def test_round_trip_size_extremes(size: int) -> None:
    cursor = encode_cursor(SortField.size, "desc", make_file(size=size))
    assert decode_cursor(cursor, SortField.size, "desc") == (size, FILE_ID)


@pytest.mark.parametrize("sort", list(SortField))
@pytest.mark.parametrize("order", ORDERS)
def test_cursor_is_tied_to_its_sort_and_order(sort: SortField, order: str) -> None:
    cursor = encode_cursor(sort, order, make_file())
    for other_sort in SortField:
        for other_order in ORDERS:
            if (other_sort, other_order) == (sort, order):
                continue
            with pytest.raises(InvalidCursor):
                decode_cursor(cursor, other_sort, other_order)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "=",
        "!!!!",
        "not base64 at all",
        "é",
        "\x00",
        "YQ",  # "a"
        "a" * 5,  # impossible base64 length
        base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),  # not UTF-8
        base64.urlsafe_b64encode(b"\xff" * 64).decode(),
        raw_cursor(None),
        raw_cursor(1),
        raw_cursor("name"),
        raw_cursor({}),
        raw_cursor([]),
        raw_cursor(["name", "asc", "x"]),
        raw_cursor(["name", "asc", "x", FILE_ID, "extra"]),
        raw_cursor(["name", "asc", "x", 5]),  # id not a string
        raw_cursor(["name", "asc", "x", None]),
        raw_cursor(["name", "asc", 5, FILE_ID]),
        raw_cursor(["name", "asc", None, FILE_ID]),
        raw_cursor(["name", "asc", ["x"], FILE_ID]),
        raw_cursor(["name", "ASC", "x", FILE_ID]),
        raw_cursor(["NAME", "asc", "x", FILE_ID]),
    ],
)
def test_garbage_name_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, SortField.name, "asc")


@pytest.mark.parametrize(
    "value",
    [
        "12",
        1.5,
        None,
        [1],
        {"a": 1},
        "٣",
    ],
)
def test_garbage_size_cursor(value: object) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(raw_cursor(["size", "asc", value, FILE_ID]), SortField.size, "asc")


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-06T07:08:09",  # naive
        "2024-05-06",  # a date is naive too
        "yesterday",
        "",
        "2024-13-45T00:00:00+00:00",
        12345,
        None,
        ["2024-05-06T07:08:09+00:00"],
        {"iso": "2024-05-06T07:08:09+00:00"},
    ],
)
def test_garbage_created_at_cursor(value: object) -> None:
    cursor = raw_cursor(["created_at", "desc", value, FILE_ID])
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, SortField.created_at, "desc")


def test_padded_cursor_is_accepted() -> None:
    cursor = encode_cursor(SortField.size, "asc", make_file())
    padded = cursor + "=" * (-len(cursor) % 4)
    assert decode_cursor(padded, SortField.size, "asc") == (12345, FILE_ID)


def test_deeply_nested_json_is_invalid_not_a_crash() -> None:
    cursor = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode()
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, SortField.name, "asc")


def test_huge_number_is_invalid_not_a_crash() -> None:
    cursor = base64.urlsafe_b64encode(b'["size","asc",' + b"9" * 5000 + b',"x"]').decode()
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, SortField.size, "asc")


# Cursors the server could never have issued must fail here, as a 400, not later in the
# database driver as a 500 (SQLite: OverflowError; both drivers: UnicodeEncodeError).
@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_size_beyond_bigint_is_invalid(value: int) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(raw_cursor(["size", "asc", value, FILE_ID]), SortField.size, "asc")


@pytest.mark.parametrize(
    "payload",
    [
        '["name","asc","\\ud800","0b7c7c1e-4a7e-4d5e-9a55-0e6c6f1b2a3c"]',
        '["name","asc","x","\\udfff"]',
    ],
    ids=["in-value", "in-id"],
)
def test_lone_surrogates_are_invalid(payload: str) -> None:
    cursor = base64.urlsafe_b64encode(payload.encode()).decode()
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, SortField.name, "asc")
