"""Bulk writes shared by every store module: chunked executemany and INSERT ... ON CONFLICT on both dialects."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

#: rows per statement: well under SQLite's 32,766 bound parameters for our widest table
CHUNK = 2000


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def dialect_insert(db: Connection, table: Table) -> Any:
    """`INSERT` with the dialect's ON CONFLICT clauses (SQLite and PostgreSQL both have them)."""
    return {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[db.dialect.name](table)


def upsert(
    db: Connection, table: Table, rows: list[dict[str, Any]], *, key: str, keep: Iterable[str] = ()
) -> None:
    """INSERT ... ON CONFLICT (`key`) DO UPDATE every column except `key` and `keep`, in chunks."""
    kept = {key, *keep}
    for chunk in chunks(rows):
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


def records(frame: pd.DataFrame, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows as dicts with None for missing values and plain datetimes (what the column types expect)."""
    subset = (frame if columns is None else frame[columns]).astype(object)
    subset = subset.where(subset.notna(), None)
    return [
        {key: (value.to_pydatetime() if isinstance(value, pd.Timestamp) else value) for key, value in row.items()}
        for row in subset.to_dict("records")
    ]
