from __future__ import annotations

import os
import random

import pytest

from filesvc.files.errors import InvalidField, MalformedMultipart, MultipartRequired
from filesvc.files.multipart import (
    MAX_PART_HEADER_BYTES,
    MAX_PARTS,
    MAX_PREAMBLE_BYTES,
    Event,
    MultipartReader,
    PartData,
    PartEnd,
    PartStart,
)

BOUNDARY = "----formboundary7MA4YWxk"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
# Binary content that looks like the start of a boundary, to stress the parser's lookbehind.
FILE_DATA = b"\r\n--" + BOUNDARY[:-1].encode() + b"\r\n" + os.urandom(3000) + b"\r\n-\r"


def part(headers: list[str], data: bytes) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers).encode("utf-8")
    return f"--{BOUNDARY}\r\n".encode() + head + b"\r\n" + data + b"\r\n"


def closing() -> bytes:
    return f"--{BOUNDARY}--\r\n".encode()


FILE_DISPOSITION = 'form-data; name="file"; filename="résumé 😀.bin"'
BODY = (
    part(['Content-Disposition: form-data; name="visibility"'], b"public")
    + part(
        [
            f"Content-Disposition: {FILE_DISPOSITION}",
            "Content-Type: application/x-thing",
            "X-Checksum-SHA256: abc",
        ],
        FILE_DATA,
    )
    + part(['Content-Disposition: form-data; name="empty"'], b"")
    + closing()
)

EXPECTED: list[Event] = [
    PartStart(
        name="visibility",
        filename=None,
        content_type=None,
        headers={"content-disposition": 'form-data; name="visibility"'},
    ),
    PartData(b"public"),
    PartEnd(),
    PartStart(
        name="file",
        filename="résumé 😀.bin",
        content_type="application/x-thing",
        headers={
            # Header values are kept as Latin-1; only the parsed name is decoded as UTF-8.
            "content-disposition": FILE_DISPOSITION.encode().decode("latin-1"),
            "content-type": "application/x-thing",
            "x-checksum-sha256": "abc",
        },
    ),
    PartData(FILE_DATA),
    PartEnd(),
    PartStart(
        name="empty",
        filename=None,
        content_type=None,
        headers={"content-disposition": 'form-data; name="empty"'},
    ),
    PartEnd(),
]


def coalesce(events: list[Event]) -> list[Event]:
    """Join consecutive data events: how data is split depends on the chunks fed."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, PartData):
            if not event.data:
                continue
            if out and isinstance(out[-1], PartData):
                out[-1] = PartData(out[-1].data + event.data)
                continue
        out.append(event)
    return out


def feed_all(reader: MultipartReader, body: bytes, sizes: list[int]) -> list[Event]:
    events: list[Event] = []
    pos = 0
    for size in sizes:
        events += reader.feed(body[pos : pos + size])
        pos += size
    events += reader.feed(body[pos:])
    reader.finish()
    return events


def feed_in_chunks(
    reader: MultipartReader, body: bytes, size: int, fed: list[int] | None = None
) -> None:
    """Feed `body` in `size` pieces, appending each piece's length to `fed` first."""
    for i in range(0, len(body), size):
        chunk = body[i : i + size]
        if fed is not None:
            fed.append(len(chunk))
        reader.feed(chunk)


def chunk_sizes(rng: random.Random, total: int) -> list[int]:
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(rng.choice([1, 2, 3, 7, 64, 500, 4096]))
    return sizes


def test_whole_body_at_once() -> None:
    reader = MultipartReader(CONTENT_TYPE)
    assert coalesce(feed_all(reader, BODY, [len(BODY)])) == EXPECTED
    assert reader.ended
    assert reader.parts_started == 3


def test_one_byte_chunks() -> None:
    reader = MultipartReader(CONTENT_TYPE)
    assert coalesce(feed_all(reader, BODY, [1] * len(BODY))) == EXPECTED


@pytest.mark.parametrize("seed", range(20))
def test_random_chunks(seed: int) -> None:
    reader = MultipartReader(CONTENT_TYPE)
    sizes = chunk_sizes(random.Random(seed), len(BODY))
    assert coalesce(feed_all(reader, BODY, sizes)) == EXPECTED


@pytest.mark.parametrize("split", range(0, len(BODY) + 1, 37))
def test_every_two_way_split(split: int) -> None:
    reader = MultipartReader(CONTENT_TYPE)
    assert coalesce(feed_all(reader, BODY, [split])) == EXPECTED


def test_events_come_back_in_order_per_feed() -> None:
    reader = MultipartReader(CONTENT_TYPE)
    first = reader.feed(BODY[:10])
    assert first == []
    rest = reader.feed(BODY[10:])
    assert isinstance(rest[0], PartStart)
    assert isinstance(rest[-1], PartEnd)
    assert reader.feed(b"") == []


def test_each_part_has_its_own_headers() -> None:
    reader = MultipartReader(CONTENT_TYPE)
    starts = [e for e in feed_all(reader, BODY, []) if isinstance(e, PartStart)]
    assert "x-checksum-sha256" in starts[1].headers
    assert "x-checksum-sha256" not in starts[2].headers
    assert starts[1].headers is not starts[2].headers


def test_latin1_filename_falls_back() -> None:
    body = (
        f"--{BOUNDARY}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="caf\xe9.txt"\r\n\r\n'
        + b"x\r\n"
        + closing()
    )
    reader = MultipartReader(CONTENT_TYPE)
    start = feed_all(reader, body, [])[0]
    assert isinstance(start, PartStart)
    assert start.filename == "café.txt"


def test_long_filename_is_accepted() -> None:
    filename = "n" * 4000
    body = part([f'Content-Disposition: form-data; name="file"; filename="{filename}"'], b"x")
    reader = MultipartReader(CONTENT_TYPE)
    events = coalesce(feed_all(reader, body + closing(), [1000] * 5))
    assert isinstance(events[0], PartStart)
    assert events[0].filename == filename
    assert events[1:] == [PartData(b"x"), PartEnd()]


def test_oversized_header_is_rejected() -> None:
    filename = "n" * (MAX_PART_HEADER_BYTES + 1)
    body = part([f'Content-Disposition: form-data; name="file"; filename="{filename}"'], b"x")
    reader = MultipartReader(CONTENT_TYPE)
    with pytest.raises(MalformedMultipart, match="header"):
        feed_in_chunks(reader, body, 1024)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/mixed; boundary=abc",
        "text/plain; boundary=abc",
    ],
)
def test_not_multipart(content_type: str | None) -> None:
    with pytest.raises(MultipartRequired) as excinfo:
        MultipartReader(content_type)
    assert excinfo.value.status_code == 415


def test_boundary_too_long() -> None:
    with pytest.raises(MalformedMultipart):
        MultipartReader("multipart/form-data; boundary=" + "b" * 201)


def test_quoted_boundary_and_case() -> None:
    reader = MultipartReader(f'Multipart/Form-Data; boundary="{BOUNDARY}"; charset=utf-8')
    assert coalesce(feed_all(reader, BODY, [])) == EXPECTED


def test_wrong_boundary() -> None:
    reader = MultipartReader("multipart/form-data; boundary=somethingelse")
    with pytest.raises(MalformedMultipart):
        reader.feed(BODY)


def test_broken_boundary_line() -> None:
    body = f"--{BOUNDARY}X\r\n".encode() + BODY[len(BOUNDARY) + 4 :]
    reader = MultipartReader(CONTENT_TYPE)
    with pytest.raises(MalformedMultipart):
        reader.feed(body)


@pytest.mark.parametrize("junk_byte", [b"x", b"\r\n"])
def test_preamble_junk_is_rejected_early(junk_byte: bytes) -> None:
    junk = junk_byte * (100 * 1024 // len(junk_byte))
    reader = MultipartReader(CONTENT_TYPE)
    fed: list[int] = []
    with pytest.raises(MalformedMultipart):
        feed_in_chunks(reader, junk, 1024, fed)
    assert sum(fed) <= MAX_PREAMBLE_BYTES + 1024
    assert sum(fed) < len(junk)


def test_leading_newlines_before_first_boundary_are_fine() -> None:
    reader = MultipartReader(CONTENT_TYPE)
    assert coalesce(feed_all(reader, b"\r\n\r\n" + BODY, [])) == EXPECTED


# The CRLF after the closing boundary is optional, so cutting only that is not truncation.
@pytest.mark.parametrize("cut", [3, 10, len(closing()), len(closing()) + 20, len(BODY) - 1])
def test_truncated_body(cut: int) -> None:
    reader = MultipartReader(CONTENT_TYPE)
    reader.feed(BODY[:-cut])
    assert not reader.ended
    with pytest.raises(MalformedMultipart):
        reader.finish()


def test_empty_body() -> None:
    reader = MultipartReader(CONTENT_TYPE)
    assert reader.feed(b"") == []
    with pytest.raises(MalformedMultipart):
        reader.finish()


@pytest.mark.parametrize(
    "headers",
    [
        [],
        ["Content-Type: text/plain"],
        ["Content-Disposition: form-data"],
        ['Content-Disposition: form-data; filename="a.txt"'],
        ['Content-Disposition: attachment; name="file"'],
    ],
)
def test_part_without_form_data_name(headers: list[str]) -> None:
    reader = MultipartReader(CONTENT_TYPE)
    with pytest.raises(MalformedMultipart):
        reader.feed(part(headers, b"x") + closing())


def test_too_many_part_headers() -> None:
    headers = ['Content-Disposition: form-data; name="a"'] + [f"X-H{i}: v" for i in range(40)]
    reader = MultipartReader(CONTENT_TYPE)
    with pytest.raises(MalformedMultipart):
        reader.feed(part(headers, b"x") + closing())


def test_epilogue_after_closing_boundary_is_harmless() -> None:
    reader = MultipartReader(CONTENT_TYPE)
    events = feed_all(reader, BODY + b"trailing junk" * 100, [])
    assert coalesce(events) == EXPECTED
    assert reader.ended


def test_too_many_parts_are_rejected() -> None:
    boundary = "many"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\nv\r\n'
    body = (part * (MAX_PARTS + 1) + f"--{boundary}--\r\n").encode()
    reader = MultipartReader(f"multipart/form-data; boundary={boundary}")
    with pytest.raises(InvalidField):
        reader.feed(body)
