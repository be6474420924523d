"""Local-store purgers: delete a company's rows of one data type from the client's own tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from sqlalchemy import Connection, MetaData, Table, delete
from sqlalchemy.exc import NoSuchTableError

from consent_lifecycle.datatypes import DATA_TYPE_SOURCE


class Purger(Protocol):
    def purge(self, db: Connection, company_id: str, data_type: str) -> int | None:
        """Delete the company's rows of `data_type`, in the caller's transaction; how many (None: none kept)."""
        ...


class SqlTablePurger:
    """Purges `DELETE FROM <table> WHERE company_id = :company` from the table mapped to the data type.

    The tables live in the consent database, so the purge commits or rolls back with the item's receipt.
    Table names are checked against the database (reflected), never pasted into SQL.
    """

    def __init__(self, tables: Mapping[str, str], company_column: str = "company_id") -> None:
        unknown = sorted(set(tables) - set(DATA_TYPE_SOURCE))
        if unknown:
            raise ValueError(f"local store tables: unknown Codat data type {unknown[0]!r}")
        self.tables = dict(tables)
        self.company_column = company_column

    def purge(self, db: Connection, company_id: str, data_type: str) -> int | None:
        name = self.tables.get(data_type)
        if name is None:
            return None
        try:
            table = Table(name, MetaData(), autoload_with=db)
        except NoSuchTableError:
            raise ValueError(f"local store table {name!r} (for {data_type}) does not exist") from None
        result = db.execute(delete(table).where(table.c[self.company_column] == company_id))
        return result.rowcount
