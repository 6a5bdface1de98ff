"""Many rows INSERTed in one go: the group commit's statements (files/inserts.py,
events/feed.py).

On the SQLite loop writer (loop_writes.py) the statements run on the driver's own
`sqlite3` connection. A Core `execute` of a small group's INSERT cost more Python than
the insert itself: cache key, compiled-cache lookup, parameter set-up and a result per
statement, about a tenth of the event loop's time under 4 KiB uploads (py-spy). Here
each statement's text is made once per table and row count, and every value goes through
the bind processor Core would apply to its column (enums, JSON, time stamps): the rows
stored are the same, and a refused row raises the same error (IntegrityError, …).
Anywhere else (PostgreSQL's sessions, an aiosqlite session) the rows go through Core.

For PostgreSQL's one-statement groups (pg_writes.py) `unnest_insert` and `column_arrays`
make an INSERT whose rows arrive as one array per column, bound the same way.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Table, insert

from filesvc.loop_writes import as_sqlalchemy_error

Row = dict[str, Any]
_Binds = tuple[tuple[str, Callable[[Any], Any] | None], ...]
# Well under SQLite's bound on the variables of one statement (32,766).
_MAX_VARIABLES = 30_000


def insert_rows(connection: Connection, table: Table, rows: Sequence[Row]) -> None:
    """INSERT `rows`, each a dict of the same columns (by column name)."""
    if not rows:
        return
    driver = _sqlite_driver(connection)
    if driver is None:
        connection.execute(insert(table), list(rows))
        return
    columns = tuple(rows[0])
    sql = _insert_sql(connection.dialect, table, columns, 1, "")
    values = _bound(connection.dialect, table, columns, rows)
    try:
        driver.executemany(sql, values)
    except sqlite3.Error as exc:
        raise as_sqlalchemy_error(sql, exc) from exc


def insert_rows_returning_ids(
    connection: Connection, table: Table, rows: Sequence[Row]
) -> list[int]:
    """INSERT `rows` as `insert_rows` does; return their ids (the table's integer primary
    key, made by the database) in the order of `rows`."""
    if not rows:
        return []
    (key,) = table.primary_key.columns
    driver = _sqlite_driver(connection)
    if driver is None:
        return _core_ids(connection, table, rows)
    columns = tuple(rows[0])
    values = _bound(connection.dialect, table, columns, rows)
    returning = f" RETURNING {connection.dialect.identifier_preparer.format_column(key)}"
    per_statement = max(1, _MAX_VARIABLES // len(columns))
    ids: list[int] = []
    for start in range(0, len(values), per_statement):
        part = values[start : start + per_statement]
        sql = _insert_sql(connection.dialect, table, columns, len(part), returning)
        flat = [value for row in part for value in row]
        try:
            ids += _in_row_order(row[0] for row in driver.execute(sql, flat))
        except sqlite3.Error as exc:
            raise as_sqlalchemy_error(sql, exc) from exc
    return ids


def _in_row_order(ids: Iterable[int]) -> list[int]:
    """The ids one SQLite statement returned, in the order of its VALUES: it numbers its
    rows in that order (the next rowid each, under the one write lock), but RETURNING may
    list them in any order."""
    return sorted(ids)


def _core_ids(connection: Connection, table: Table, rows: Sequence[Row]) -> list[int]:
    (key,) = table.primary_key.columns
    if connection.dialect.name == "sqlite":
        # SQLAlchemy runs an ordered RETURNING on SQLite one row per statement: one
        # statement unordered instead.
        return _in_row_order(connection.execute(insert(table).returning(key), list(rows)).scalars())
    ordered = insert(table).returning(key, sort_by_parameter_order=True)
    return list(connection.execute(ordered, list(rows)).scalars())


def _sqlite_driver(connection: Connection) -> sqlite3.Connection | None:
    """The `sqlite3` connection under `connection`, if it is one (the loop writer's)."""
    driver = connection.connection.driver_connection
    return driver if isinstance(driver, sqlite3.Connection) else None


def _bound(
    dialect: Dialect, table: Table, columns: tuple[str, ...], rows: Sequence[Row]
) -> list[tuple[Any, ...]]:
    binds = _bind_processors(dialect, table, columns)
    return [
        tuple(row[name] if bind is None else bind(row[name]) for name, bind in binds)
        for row in rows
    ]


@functools.lru_cache(maxsize=64)
def _bind_processors(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> _Binds:
    """Each column's bind processor for this dialect, as Core applies it (None: as is)."""
    return tuple(
        (name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in columns
    )


@functools.lru_cache(maxsize=256)
def _insert_sql(
    dialect: Dialect, table: Table, columns: tuple[str, ...], row_count: int, returning: str
) -> str:
    quote = dialect.identifier_preparer
    names = ", ".join(quote.format_column(table.c[name]) for name in columns)
    row = "(" + ", ".join("?" * len(columns)) + ")"
    values = ", ".join([row] * row_count)
    # Only the table's own quoted names and placeholders: every value is bound.
    table_name = quote.format_table(table)
    return f"INSERT INTO {table_name} ({names}) VALUES {values}{returning}"  # noqa: S608


def unnest_insert(
    dialect: Dialect, table: Table, columns: Sequence[str], first_parameter: int
) -> str:
    """PostgreSQL: an INSERT of `columns` whose rows come from one array parameter per
    column ($first_parameter, …, see `column_arrays`), however many rows there are: one
    statement text, prepared once."""
    quote = dialect.identifier_preparer
    names = ", ".join(quote.format_column(table.c[name]) for name in columns)
    arrays = ", ".join(
        f"${first_parameter + i}::{table.c[name].type.compile(dialect=dialect)}[]"
        for i, name in enumerate(columns)
    )
    table_name = quote.format_table(table)
    return f"INSERT INTO {table_name} ({names}) SELECT * FROM unnest({arrays})"  # noqa: S608


def column_arrays(
    dialect: Dialect, table: Table, columns: Sequence[str], rows: Sequence[Row]
) -> list[list[Any]]:
    """The parameters of `unnest_insert`: each column's values over the rows, each bound
    as Core would bind it."""
    bound = _bound(dialect, table, tuple(columns), rows)
    return [list(values) for values in zip(*bound, strict=True)] if bound else [[] for _ in columns]
