"""Product reads: products ask before they read (`is_permitted`) and report what they read (`record_access`).

Reconciliation checks every recorded read against the reading product's own consent at the time of the
read: another product's consent covering the same data type does not make the read permitted.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Engine, insert

from consent_lifecycle.access.check import validate_checks
from consent_lifecycle.catalog import Catalog
from consent_lifecycle.clock import as_utc
from consent_lifecycle.db.bulk import plain_rows
from consent_lifecycle.db.models import AccessRecord
from consent_lifecycle.ledger import ConsentError, Ledger
from consent_lifecycle.ledger.scope import check_data_type_key


def record_access(
    engine: Engine,
    catalog: Catalog,
    product: str,
    company_id: str,
    data_type: str,
    at: datetime,
    *,
    now: datetime,
    connection_id: str | None = None,
) -> int:
    """Record that `product` read `data_type` of `company_id` at `at`; returns the record's id.

    The product and data type must be known (an error naming them otherwise, nothing written); whether the
    read was permitted is reconciliation's question, so an unpermitted read is recorded all the same.
    """
    _check(catalog, product, data_type)
    row = {
        "product": product,
        "company_id": company_id,
        "connection_id": connection_id,
        "data_type": data_type,
        "at": as_utc(at),
        "recorded_at": as_utc(now),
    }
    with engine.begin() as db:
        return db.execute(insert(AccessRecord).values(row).returning(AccessRecord.id)).scalar_one()


#: what `record_accesses` reads (connection_id may be missing or None)
RECORD_COLUMNS = ["product", "company_id", "connection_id", "data_type", "at"]


def record_accesses(engine: Engine, catalog: Catalog, rows: pd.DataFrame, now: datetime) -> list[int]:
    """`record_access` for many reads in one INSERT statement; the new ids, in the rows' order.

    Every row is checked first (an error naming the first bad row's position and value: a missing
    company, an unknown product or data type, a missing `at`): nothing is written when one is bad."""
    frame = rows.reset_index(drop=True)
    if "connection_id" not in frame:
        frame = frame.assign(connection_id=None)
    validate_checks(catalog, frame.assign(connection_id="-"), what="records")
    if "at" not in frame:
        raise ConsentError("records lack the column 'at' (when each read happened)")
    at = pd.to_datetime(frame["at"], utc=True)
    bad = np.flatnonzero(at.isna().to_numpy())
    if len(bad):
        raise ConsentError(f"records[{bad[0]}]: at must be a time, got {frame['at'].iloc[bad[0]]!r}")
    if frame.empty:
        return []
    values = plain_rows(frame.assign(at=at, recorded_at=pd.Timestamp(as_utc(now))), RECORD_COLUMNS + ["recorded_at"])
    statement = insert(AccessRecord).returning(AccessRecord.id, sort_by_parameter_order=True)
    with engine.begin() as db:
        return list(db.execute(statement, values).scalars())


def is_permitted(
    engine: Engine,
    catalog: Catalog,
    product: str,
    company_id: str,
    data_type: str,
    at: datetime,
    *,
    connection_id: str | None = None,
) -> bool:
    """Whether `product`'s own consent covered `data_type` of the company at `at`, on a connection that was
    usable then (Linked, not expired), and on `connection_id` when given."""
    _check(catalog, product, data_type)
    entitled = Ledger(engine, catalog).entitlements(company_id, as_of=as_utc(at))
    rows = entitled[entitled["data_type"] == data_type]
    if connection_id is not None:
        rows = rows[rows["connection_id"] == connection_id]
    return any(product in products for products in rows["products"])


def _check(catalog: Catalog, product: str, data_type: str) -> None:
    """Errors naming an unknown product or data type."""
    catalog.product(product)
    check_data_type_key(data_type)
