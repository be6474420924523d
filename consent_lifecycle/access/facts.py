"""What an access check reads, per check (`ASKED_COLUMNS`): whether the company is known, its consent to
the product (id and status) and whether that covers the data type and the connection, and the named
connection as the snapshot holds it now.

One statement per call (PostgreSQL; per 2,000 checks on SQLite) reads the current-state tables
(`asked_now`): the checks are a table joined to companies, consents and connections, each coverage an
`EXISTS` on a primary key, so every lookup is driven by the checks themselves, whatever the planner's
statistics say (`IN` lists joined to the consents let SQLite scan every consent after `ANALYZE`: 10x
slower). For a
check at a past time the consent columns come from the consents replayed from the ledger
(`consents_as_of`); the snapshot is the current one either way, as `Ledger.entitlements` reads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection as Db
from sqlalchemy import Engine

from consent_lifecycle.batching import batched
from consent_lifecycle.catalog import Catalog
from consent_lifecycle.ledger import Ledger

KEYS = ["company_id", "product", "connection_id", "data_type"]
#: what the consents say about a check
CONSENT_COLUMNS = ["consent_id", "consent_status", "has_type", "has_connection"]
#: the named connection as the snapshot holds it (`owner`: its company), what `expiry.classify` reads
SNAPSHOT_COLUMNS = [
    "owner", "source_type", "status", "jurisdiction", "created_at", "last_sync_at", "last_authorized_at",
    "last_reconfirmed_at", "deleted_at",
]
ASKED_COLUMNS = ["company_known", *CONSENT_COLUMNS, *SNAPSHOT_COLUMNS]
TIME_COLUMNS = ("created_at", "last_sync_at", "last_authorized_at", "last_reconfirmed_at", "deleted_at")
#: the checks as a table (i, company_id, product, connection_id, data_type). PostgreSQL: one array parameter
#: per column, unnested, so one statement of fixed text (parsed once by the driver, planned alike) takes any
#: number of checks (a VALUES list of 10,000 rows spent half its time in psycopg's placeholder parsing).
#: SQLite: a VALUES list per chunk of ROWS_PER_STATEMENT checks (a JSON array through json_each is 15% slower)
UNNESTED_CHECKS = (
    "SELECT o - 1, c, p, n, d FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
    "WITH ORDINALITY AS u (c, p, n, d, o)"
)
#: 5 parameters each: well under SQLite's 32,766
ROWS_PER_STATEMENT = 2000
ASKED_SQL = """\
WITH asked (i, company_id, product, connection_id, data_type) AS ({checks})
SELECT asked.i, companies.id IS NOT NULL, consents.id, consents.status,
  EXISTS (SELECT 1 FROM consent_data_types t WHERE t.consent_id = consents.id AND t.data_type = asked.data_type),
  EXISTS (SELECT 1 FROM consent_connections c
          WHERE c.consent_id = consents.id AND c.connection_id = asked.connection_id),
  n.company_id, n.source_type, n.status, owners.jurisdiction, n.created_at, n.last_sync_at, n.last_authorized_at,
  n.last_reconfirmed_at, n.deleted_at
FROM asked
LEFT JOIN companies ON companies.id = asked.company_id
LEFT JOIN consents ON consents.company_id = asked.company_id AND consents.product = asked.product
LEFT JOIN connections n ON n.id = asked.connection_id
LEFT JOIN companies owners ON owners.id = n.company_id"""


def distinct(values: Iterable[str]) -> list[str]:
    """The distinct values, sorted (a Series without iterating it value by value)."""
    return sorted(pd.unique(pd.Series(values, dtype=object)).tolist())


def asked_now(db: Db, checks: pd.DataFrame) -> pd.DataFrame:
    """ASKED_COLUMNS of each check (KEYS), in its order (same index), from the current-state tables."""
    columns = [checks[column].tolist() for column in KEYS]
    if db.dialect.name == "postgresql":
        statements = [(ASKED_SQL.format(checks=UNNESTED_CHECKS), tuple(columns))]
    else:
        statements = [
            (
                ASKED_SQL.format(checks="VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * len(part))),
                tuple(value for row in part for value in row),
            )
            for part in batched(list(zip(range(len(checks)), *columns, strict=True)), ROWS_PER_STATEMENT)
        ]
    found = [tuple(row) for sql, values in statements for row in db.exec_driver_sql(sql, values).all()]
    frame = pd.DataFrame.from_records(found, columns=["i", *ASKED_COLUMNS]).set_index("i").sort_index()
    for column in ("company_known", "has_type", "has_connection"):
        frame[column] = frame[column].astype(bool)
    for column in TIME_COLUMNS:  # SQLite gives the stored text (naive UTC), PostgreSQL aware datetimes
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame.reset_index(drop=True).set_axis(checks.index)


def consents_as_of(
    engine: Engine, catalog: Catalog, company_id: str, at: datetime, checks: pd.DataFrame
) -> pd.DataFrame:
    """CONSENT_COLUMNS of each check of one company (KEYS), in its order, from the company's consents
    replayed from the ledger as of `at` (as `Ledger.entitlements(company_id, as_of=at)` sees them)."""
    state = Ledger(engine, catalog).state(company_id, as_of=at)
    consents = state.consents[["company_id", "product", "consent_id", "status"]]
    asked = checks[KEYS].merge(consents.rename(columns={"status": "consent_status"}), on=["company_id", "product"],
                               how="left")
    return pd.DataFrame(
        {
            "consent_id": asked["consent_id"],
            "consent_status": asked["consent_status"],
            "has_type": pairs_in(asked[["consent_id", "data_type"]], state.data_types),
            "has_connection": pairs_in(asked[["consent_id", "connection_id"]], state.connections),
        }
    ).set_axis(checks.index)


def pairs_in(left: pd.DataFrame, right: pd.DataFrame) -> pd.Series:
    """Whether each row of `left` (two columns) is a row of `right` (the same two columns)."""
    first, second = left.columns

    def keys(frame: pd.DataFrame) -> pd.Series:
        return frame[first].astype(str) + "\x00" + frame[second].astype(str)

    return keys(left).isin(set(keys(right)) if len(right) else set())
