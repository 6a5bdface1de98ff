"""Opaque keyset cursors: the last row's (sort value, id), tied to the sort order."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from filesvc.files.errors import InvalidCursor
from filesvc.files.models import File
from filesvc.files.schemas import SortField

SORT_COLUMNS = {
    SortField.created_at: File.created_at,
    SortField.name: File.name,
    SortField.size: File.size,
}


_VALUE_TYPES: dict[SortField, type] = {SortField.size: int, SortField.name: str}


def encode_cursor(sort: SortField, order: str, file: File) -> str:
    value: Any = getattr(file, sort.value)
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([sort.value, order, value, file.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: SortField, order: str) -> tuple[Any, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, cursor_order, value, file_id = json.loads(raw)
        if (cursor_sort, cursor_order) != (sort.value, order) or not isinstance(file_id, str):
            raise InvalidCursor()
        if sort is SortField.created_at:
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise InvalidCursor()
        elif not isinstance(value, _VALUE_TYPES[sort]) or isinstance(value, bool):
            raise InvalidCursor()
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise InvalidCursor()  # beyond BIGINT: the driver would fail, not the client
        for text in (value, file_id):
            if isinstance(text, str):
                text.encode()  # lone surrogates cannot reach the database
    except (ValueError, TypeError, binascii.Error, UnicodeError, RecursionError):
        raise InvalidCursor() from None
    return value, file_id


def after_cursor(sort: SortField, order: str, value: Any, file_id: str) -> ColumnElement[bool]:
    column = SORT_COLUMNS[sort]
    if order == "asc":
        return or_(column > value, and_(column == value, File.id > file_id))
    return or_(column < value, and_(column == value, File.id < file_id))
