"""New file rows and their `file.created` events, committed in groups (group_commit.py):
the uploads that finish while one commit runs share the next one.

A group is written with Core statements, not an ORM flush: one executemany INSERT of the
files, one INSERT of the events that returns their ids (events/feed.py). A flush costs
ORM bookkeeping per row and, for rows whose ids the database makes, one statement per row
on SQLite; each statement is a round trip through the event loop, which every upload of
the group waits for. The ORM's Python-side defaults are filled in here instead, so the
objects returned to the route are as complete as flushed ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnDefault, Connection, Table, inspect
from sqlalchemy.orm import make_transient_to_detached

from filesvc.db import Database, utcnow
from filesvc.events.feed import CREATED, FileFeed
from filesvc.events.models import FileEvent
from filesvc.files.models import File
from filesvc.group_commit import GroupCommit
from filesvc.row_inserts import insert_rows

# Makes the rows of one upload; called again if its group is retried, so always new objects.
Build = Callable[[], list[File]]
Inserted = tuple[list[File], list[FileEvent]]
FileInserts = GroupCommit[Build, Inserted]

_FILES = cast(Table, File.__table__)
# (attribute, column) of every mapped column: `meta` is the column "metadata".
_COLUMNS = [(prop.key, prop.columns[0].key) for prop in inspect(File).column_attrs]


def _column_defaults() -> list[tuple[str, ColumnDefault]]:
    """The Python-side defaults of File's columns (models.py), as a flush applies them."""
    defaults = []
    for prop in inspect(File).column_attrs:
        default = prop.columns[0].default
        if isinstance(default, ColumnDefault):
            defaults.append((prop.key, default))
    return defaults


_DEFAULTS = _column_defaults()


def complete(file: File, now: datetime) -> File:
    """Fill what a flush would: every column's default where the file leaves it unset, and
    one time stamp for the whole group; every column is set then."""
    file.created_at = file.updated_at = now
    state = file.__dict__
    for attribute, default in _DEFAULTS:
        if state.get(attribute) is None:
            setattr(file, attribute, default.arg(None) if default.is_callable else default.arg)
    return file


def _row(file: File) -> dict[str, Any]:
    return {column: getattr(file, attribute) for attribute, column in _COLUMNS}


def insert_files(connection: Connection, files: list[File]) -> None:
    """INSERT the new files in one statement; they become detached objects, as after a
    committed flush (loaded, with their identity), not pending ones of a session."""
    now = utcnow()
    rows = [_row(complete(file, now)) for file in files]
    insert_rows(connection, _FILES, rows)
    for file in files:
        make_transient_to_detached(file)


def file_inserts(db: Database, feed: FileFeed) -> FileInserts:
    def write(connection: Connection, builds: list[Build]) -> list[Inserted]:
        per_upload = [build() for build in builds]
        files = [file for rows in per_upload for file in rows]
        insert_files(connection, files)
        events = feed.insert(connection, CREATED, files)  # one event per file, in order
        inserted: list[Inserted] = []
        start = 0
        for rows in per_upload:
            inserted.append((rows, events[start : start + len(rows)]))
            start += len(rows)
        return inserted

    return GroupCommit(db.sessionmaker, write, db.group_writer)
