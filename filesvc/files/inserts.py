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

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnDefault, Connection, Dialect, Table, inspect
from sqlalchemy.orm import make_transient_to_detached

from filesvc.db import Database, utcnow
from filesvc.events.feed import CREATED, EVENT_COLUMNS, FileFeed, NewEvent, event_row
from filesvc.events.models import FileEvent
from filesvc.files.models import File
from filesvc.group_commit import GroupCommit, Statement
from filesvc.pg_writes import PostgresWriter
from filesvc.row_inserts import column_arrays, insert_rows, unnest_insert

# Makes the rows of one upload; called again if its group is retried, so always new objects.
Build = Callable[[], list[File]]
Inserted = tuple[list[File], list[NewEvent]]
FileInserts = GroupCommit[Build, Inserted]

logger = logging.getLogger(__name__)

_FILES = cast(Table, File.__table__)
_EVENTS = cast(Table, FileEvent.__table__)
_LITERAL = {"literal_binds": True}
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
        return _per_upload(per_upload, events)

    statement = None
    if db.pg_writer is not None:
        statement = _one_statement(db.pg_writer, db.engine.dialect, feed)
    return GroupCommit(db.sessionmaker, write, db.group_writer, statement)


def _per_upload(per_upload: list[list[File]], events: list[NewEvent]) -> list[Inserted]:
    """Each upload's files with their events (in the order of all files)."""
    inserted: list[Inserted] = []
    start = 0
    for rows in per_upload:
        inserted.append((rows, events[start : start + len(rows)]))
        start += len(rows)
    return inserted


def _one_statement(
    writer: PostgresWriter, dialect: Dialect, feed: FileFeed
) -> Statement[Build, Inserted]:
    """PostgreSQL: a group's files and their events in one statement, committed as it
    returns (pg_writes.py); the same rows as `write` makes through Core."""
    file_columns = [column for _, column in _COLUMNS]
    files_sql = unnest_insert(dialect, _FILES, file_columns, 1)
    events_sql = unnest_insert(dialect, _EVENTS, EVENT_COLUMNS, len(file_columns) + 1)
    sql = f"WITH new_files AS ({files_sql}) {events_sql} RETURNING file_id, id"

    async def insert(builds: list[Build]) -> list[Inserted]:
        per_upload = [build() for build in builds]
        files = [file for rows in per_upload for file in rows]
        now = utcnow()
        rows = [_row(complete(file, now)) for file in files]
        events = feed.new_events(CREATED, files)
        arrays = column_arrays(dialect, _FILES, file_columns, rows)
        arrays += column_arrays(dialect, _EVENTS, EVENT_COLUMNS, [event_row(e) for e in events])
        returned = await writer.fetch(sql, *arrays)  # RowsRefused: each tried alone
        ids = {row["file_id"]: row["id"] for row in returned}
        for event in events:
            event.id = ids[event.file_id]
        for file in files:
            make_transient_to_detached(file)
        await _trim(writer, dialect, feed, max(ids.values(), default=0))
        return _per_upload(per_upload, events)

    return insert


async def _trim(writer: PostgresWriter, dialect: Dialect, feed: FileFeed, newest_id: int) -> None:
    """Delete the events that left the replay window, if due; the group is committed
    already, so a failure here only leaves them for the next trim."""
    through = feed.trim_due(newest_id)
    if through is None:
        return
    delete = feed.trim_statement(through)
    try:
        await writer.execute(str(delete.compile(dialect=dialect, compile_kwargs=_LITERAL)))
    except Exception:
        logger.warning("could not trim the file events", exc_info=True)
    else:
        feed.trimmed(through)
