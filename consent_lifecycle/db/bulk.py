"""Bulk reads and writes shared by every store module: chunked IN-selects into frames, chunked executemany
and INSERT ... ON CONFLICT on both dialects."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import ColumnElement, Connection, Select, String, Table
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlalchemy.dialects import postgresql, sqlite

from consent_lifecycle.batching import batched

#: rows per statement: well under SQLite's 32,766 bound parameters for our widest table
CHUNK = 2000


def select_rows(
    db: Connection, query: Select, column: ColumnElement[Any] | None = None, keys: Iterable[Any] | None = None
) -> list[tuple[Any, ...]]:
    """The rows of `query` as tuples, restricted to `column IN keys` when keys are given: one statement per
    CHUNK keys, rows concatenated in chunk order."""
    if keys is None:
        return [tuple(row) for row in db.execute(query).all()]
    if column is None:
        raise ValueError("select_rows: keys given without the column they restrict")
    return [
        tuple(row) for part in batched(list(keys), CHUNK) for row in db.execute(query.where(column.in_(part))).all()
    ]


def select_frame(
    db: Connection, query: Select, column: ColumnElement[Any] | None = None, keys: Iterable[Any] | None = None
) -> pd.DataFrame:
    """`select_rows` as a frame, its columns named as the query selects them."""
    names = [c.key for c in query.selected_columns]
    return pd.DataFrame.from_records(select_rows(db, query, column, keys), columns=names)


def dialect_insert(db: Connection, table: Table) -> Any:
    """`INSERT` with the dialect's ON CONFLICT clauses (SQLite and PostgreSQL both have them)."""
    return {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[db.dialect.name](table)


def upsert(
    db: Connection, table: Table, rows: list[dict[str, Any]], *, key: str, keep: Iterable[str] = ()
) -> None:
    """INSERT ... ON CONFLICT (`key`) DO UPDATE every column except `key` and `keep`, in chunks."""
    kept = {key, *keep}
    for chunk in batched(rows, CHUNK):
        statement = dialect_insert(db, table)
        updates = {name: statement.excluded[name] for name in chunk[0] if name not in kept}
        db.execute(statement.on_conflict_do_update(index_elements=[table.c[key]], set_=updates), chunk)


def insert_new(db: Connection, table: Table, rows: list[dict[str, Any]], *, key: str) -> int:
    """INSERT ... ON CONFLICT (`key`) DO NOTHING; returns how many rows were new.

    One statement, compiled once, executed over all rows (SQLAlchemy batches it with RETURNING), rather than
    a multi-row VALUES statement per chunk that is compiled anew each time.
    """
    if not rows:
        return 0
    statement = dialect_insert(db, table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    return len(db.execute(statement, rows).all())


def plain_rows(frame: pd.DataFrame, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows as dicts (None for missing values, plain datetimes), built column by column: datetime columns
    are converted as whole arrays, not value by value."""
    subset = frame if columns is None else frame[columns]
    names = list(subset.columns)
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate column names: {names}")
    return [dict(zip(names, values, strict=True)) for values in zip(*(_plain(subset[n]) for n in names))]


def _plain(column: pd.Series) -> list[Any]:
    missing = column.isna().to_numpy()
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(column.dtype):
        values = column.array.to_pydatetime()
    else:
        values = column.astype(object).to_numpy(copy=True)
        if column.dtype == object:  # may hold Timestamps among other values
            stamps = [i for i, value in enumerate(values) if isinstance(value, pd.Timestamp)]
            values[stamps] = [values[i].to_pydatetime() for i in stamps]
    values[missing] = None
    return values.tolist()


def update_in(
    db: Connection, table: Table, column: str, keys: Sequence[Any], values: dict[str, Any]
) -> int:
    """UPDATE `table` SET `values` WHERE `column` IN `keys`, one statement per chunk; rows updated."""
    updated = 0
    for chunk in batched(list(keys), CHUNK):
        result = db.execute(table.update().where(table.c[column].in_(chunk)).values(**values))
        updated += result.rowcount or 0
    return updated


def upsert_frame(
    db: Connection, table: Table, frame: pd.DataFrame, *, key: str, keep: Iterable[str] = ()
) -> None:
    """`upsert` of a frame's rows (its columns are the table's columns to write).

    On SQLite the time columns (`UTCDateTime`) are rendered once per column, vectorised, to the text that
    type stores (naive UTC, `YYYY-MM-DD HH:MM:SS.ffffff`) and bound as plain text, so that tens of thousands
    of rows are not passed value by value through the type's Python bind processing. Other dialects, and
    every other column, bind through the table's own types."""
    if frame.empty:
        return
    lean, rows = bindable(db, table, frame)
    kept = {key, *keep}
    for chunk in batched(rows, CHUNK):
        statement = dialect_insert(db, lean)
        updates = {name: statement.excluded[name] for name in frame.columns if name not in kept}
        db.execute(statement.on_conflict_do_update(index_elements=[key], set_=updates), chunk)


def _sqlite_text(column: pd.Series) -> pd.Series:
    """Aware times as the text `UTCDateTime` stores on SQLite (naive UTC, microseconds); None when missing."""
    times = pd.to_datetime(column, utc=True)
    if times.dt.tz is None:
        raise ValueError(f"column {column.name!r} holds naive times")
    naive = times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    text = np.char.replace(np.datetime_as_string(naive, unit="us"), "T", " ").astype(object)
    text[times.isna().to_numpy()] = None
    return pd.Series(text, index=column.index, dtype=object)


def bindable(db: Connection, table: Table, frame: pd.DataFrame) -> tuple[Any, list[dict[str, Any]]]:
    """The rows of `frame` ready to execute (what `plain_rows` gives), and the table to write them through.

    On SQLite that table is a lean copy of `table` (its name, the frame's columns) whose time columns are
    plain text, and the frame's time columns are rendered to the text `UTCDateTime` stores, vectorised, as
    `upsert_frame` does; other columns keep their types (JSON is still encoded by its type). Elsewhere it is
    `table` itself. For statements a store module builds itself (its own ON CONFLICT clauses)."""
    if frame.empty:
        return table, []
    if db.dialect.name != "sqlite":
        return table, plain_rows(frame)
    from consent_lifecycle.db.types import UTCDateTime

    times = [name for name in frame.columns if isinstance(table.c[name].type, UTCDateTime)]
    rendered = frame.assign(**{name: _sqlite_text(frame[name]) for name in times})
    lean = sa_table(
        table.name,
        *(sa_column(name, String() if name in times else table.c[name].type) for name in frame.columns),
        schema=table.schema,
    )
    return lean, plain_rows(rendered)
