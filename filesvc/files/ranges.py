"""HTTP Range requests (RFC 9110 §14), for every download path."""

from __future__ import annotations

from filesvc.errors import RangeNotSatisfiable

# More ranges than this are not worth serving as multipart; the full body is sent instead.
MAX_RANGES = 16


def _is_position(text: str) -> bool:
    # ASCII only (str.isdigit accepts other scripts) and short enough for int().
    return text.isascii() and text.isdigit() and len(text) <= 19


def parse_range(header: str, size: int) -> list[tuple[int, int]] | None:
    """Half-open (start, end) ranges for a `Range` header, merged and sorted.

    None means "ignore the header and send everything" (RFC 9110 lets a server do so for
    one it cannot or will not honour: other units, bad syntax, too many ranges).
    Raises RangeNotSatisfiable when the syntax is valid but no range overlaps the body.
    """
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = spec.split(",")
    if len(parts) > MAX_RANGES:
        return None
    ranges: list[tuple[int, int]] = []
    for part in parts:
        first, dash, last = part.strip().partition("-")
        first, last = first.strip(), last.strip()
        if not dash or not (first or last):
            return None
        if (first and not _is_position(first)) or (last and not _is_position(last)):
            return None
        if not first:  # suffix: the last N bytes
            suffix = int(last)
            if suffix == 0 or size == 0:
                continue
            ranges.append((max(size - suffix, 0), size))
            continue
        start = int(first)
        if last and int(last) < start:
            return None  # e.g. bytes=5-1: invalid, so ignored
        if start < size:
            end = int(last) + 1 if last else size
            ranges.append((start, min(end, size)))
    if not ranges:
        raise RangeNotSatisfiable(size)
    ranges.sort()
    merged = [ranges[0]]
    for start, end in ranges[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end:
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    return merged
