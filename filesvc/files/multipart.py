"""A streaming multipart/form-data reader on python-multipart's push parser.

The parser's callbacks are synchronous, but storing a part's bytes is not, so the
callbacks only record events; the caller handles them after each `feed()` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from filesvc.files.errors import InvalidField, MalformedMultipart, MultipartRequired

# A body that has not started its first part by now is junk, not a slow client.
MAX_PREAMBLE_BYTES = 64 * 1024
# Room for a 4,000-byte file name in Content-Disposition, but no more.
MAX_PART_HEADER_BYTES = 16 * 1024
MAX_PART_HEADERS = 16
MAX_PARTS = 100


@dataclass(slots=True)
class PartStart:
    name: str
    filename: str | None
    content_type: str | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class PartData:
    data: bytes


@dataclass(slots=True)
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd


def _decode(value: bytes) -> str:
    # Browsers send UTF-8 file names raw; fall back to Latin-1, which never fails.
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def boundary_from(content_type: str | None) -> bytes:
    media_type, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise MultipartRequired()
    if len(boundary) > 200:
        raise MalformedMultipart("The multipart boundary is too long.")
    return boundary


class MultipartReader:
    def __init__(self, content_type: str | None) -> None:
        self._events: list[Event] = []
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._bytes_fed = 0
        self.parts_started = 0
        self.ended = False
        self._parser = MultipartParser(
            boundary_from(content_type),
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
            max_header_count=MAX_PART_HEADERS,
            max_header_size=MAX_PART_HEADER_BYTES,
        )

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse one chunk of body; return the events it completed, in order."""
        self._bytes_fed += len(chunk)
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise MalformedMultipart(f"Malformed multipart body: {exc}") from None
        if not self.parts_started and not self.ended and self._bytes_fed > MAX_PREAMBLE_BYTES:
            raise MalformedMultipart("No multipart boundary found at the start of the body.")
        events, self._events = self._events, []
        return events

    def finish(self) -> None:
        if not self.ended:
            raise MalformedMultipart("The body ended before the closing multipart boundary.")

    def _on_part_begin(self) -> None:
        self.parts_started += 1
        if self.parts_started > MAX_PARTS:
            raise InvalidField(f"A form may have at most {MAX_PARTS} parts.")
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        name = self._header_field.decode("latin-1").strip().lower()
        # Latin-1 keeps the raw bytes; names inside are decoded once parsed out.
        self._headers[name] = self._header_value.decode("latin-1").strip()
        self._header_field.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get("content-disposition", ""))
        if disposition != b"form-data" or b"name" not in params:
            raise MultipartParseError("a part lacks Content-Disposition: form-data; name=…")
        filename = params.get(b"filename")
        self._events.append(
            PartStart(
                name=_decode(params[b"name"]),
                filename=_decode(filename) if filename is not None else None,
                content_type=self._headers.get("content-type"),
                headers=self._headers,
            )
        )

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._events.append(PartData(data[start:end]))

    def _on_part_end(self) -> None:
        self._events.append(PartEnd())

    def _on_end(self) -> None:
        self.ended = True
