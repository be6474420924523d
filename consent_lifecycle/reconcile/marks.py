"""Companies marked for the next reconciliation, and why.

Events mark a company when what they say needs Codat read again (a failed pull, a connection change, a
product change, an event that could not be processed); the reconciliation of that company clears the marks
it has seen (`marked_at` at or before its `now`), in the transaction that stores its result, so a mark made
while it ran stays for the next one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection as Db
from sqlalchemy import bindparam, delete, select

from consent_lifecycle.batching import batched
from consent_lifecycle.db.bulk import CHUNK, select_rows, upsert
from consent_lifecycle.db.models import ReconcileMark

#: why a company is marked (the names the summaries count by)
REASONS = (
    "violation",
    # the reconciliation committed its findings but its remediation at Codat has not finished (a crash, a
    # failure): the next run reads the company again and finishes it
    "remediation_pending",
    "failed_pull",
    "connection_change",
    "company_change",
    "processing_failed",
)


def mark(db: Db, marks: Iterable[tuple[str, str]], now: datetime) -> int:
    """Mark each (company_id, reason) at `now`, adding to any reasons already there; returns companies marked."""
    wanted: dict[str, set[str]] = {}
    for company_id, reason in marks:
        if reason not in REASONS:
            raise ValueError(f"unknown reconcile mark reason {reason!r} (known: {', '.join(REASONS)})")
        wanted.setdefault(company_id, set()).add(reason)
    if not wanted:
        return 0
    table = ReconcileMark.__table__
    query = select(table.c.company_id, table.c.reasons, table.c.first_marked_at)
    existing = {c: (set(r or ()), first) for c, r, first in select_rows(db, query, table.c.company_id, wanted)}
    rows = [
        {
            "company_id": company_id,
            "reasons": sorted(reasons | existing.get(company_id, (set(), None))[0]),
            "first_marked_at": existing.get(company_id, (None, now))[1] or now,
            "marked_at": now,
        }
        for company_id, reasons in sorted(wanted.items())
    ]
    upsert(db, table, rows, key="company_id", keep=("first_marked_at",))
    return len(rows)


def marked(db: Db, company_ids: Sequence[str] | None = None) -> dict[str, list[str]]:
    """The marked companies (all, or those of `company_ids`) with their reasons."""
    table = ReconcileMark.__table__
    query = select(table.c.company_id, table.c.reasons).order_by(table.c.company_id)
    rows = select_rows(db, query) if company_ids is None else select_rows(db, query, table.c.company_id, company_ids)
    return {company_id: list(reasons or ()) for company_id, reasons in rows}


def clear(db: Db, company_ids: Sequence[str], reconciled_at: datetime) -> int:
    """Clear the marks of `company_ids` made at or before `reconciled_at`; returns how many were cleared."""
    table = ReconcileMark.__table__
    cleared = 0
    for ids in batched(list(company_ids), CHUNK):
        statement = delete(table).where(table.c.company_id.in_(ids), table.c.marked_at <= reconciled_at)
        cleared += db.execute(statement).rowcount
    return cleared


def unmark(db: Db, company_ids: Sequence[str], reason: str, at: datetime) -> int:
    """Take `reason` off the marks of `company_ids` made at or before `at` (a mark left with no reason is
    deleted); returns how many marks changed."""
    table = ReconcileMark.__table__
    query = select(table.c.company_id, table.c.reasons).where(table.c.marked_at <= at)
    rows = select_rows(db, query, table.c.company_id, company_ids)
    changed = [(c, [r for r in reasons or () if r != reason]) for c, reasons in rows if reason in (reasons or ())]
    empty = [c for c, left in changed if not left]
    for ids in batched(empty, CHUNK):
        db.execute(delete(table).where(table.c.company_id.in_(ids)))
    kept = [{"b_company_id": c, "reasons": left} for c, left in changed if left]
    if kept:  # one statement over every row
        db.execute(table.update().where(table.c.company_id == bindparam("b_company_id")), kept)
    return len(changed)
