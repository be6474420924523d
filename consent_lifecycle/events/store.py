"""Writing one batch's effects, in the transaction that marks its events done; each effect is idempotent
(observations inserted if new, times only moved forward, state only replaced by newer state, marks merged).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Connection as Db
from sqlalchemy import bindparam, func, select, update

from consent_lifecycle.datatypes import COMPLETE
from consent_lifecycle.db.bulk import bindable, dialect_insert, insert_new, select_frame
from consent_lifecycle.db.models import Company, Connection, PullRecord, ReadObservation
from consent_lifecycle.events.decide import (
    ConnectionPlan,
    judge_reads,
    last_reads,
    plan_connections,
    stale_failures,
)
from consent_lifecycle.events.parse import Parsed
from consent_lifecycle.ledger import load_events
from consent_lifecycle.reconcile.marks import mark
from consent_lifecycle.reconcile.store import SNAPSHOT_COLUMNS

_STATE = [Connection.id, Connection.company_id, Connection.status, Connection.state_at,
          Connection.last_authorized_at, Connection.status_changed_at]


@dataclass
class Effects:
    """What one batch did: read entries observed, violations (and their companies), marks by reason."""

    observations: int = 0
    violations: int = 0
    violating_companies: list[str] = field(default_factory=list)
    marked: dict[str, list[str]] = field(default_factory=dict)
    connections_updated: int = 0
    connections_inserted: int = 0
    stale_connection_events: int = 0
    companies_deleted: int = 0


def apply(db: Db, parsed: Parsed, now: datetime, keeps_fresh: timedelta | None = None) -> Effects:
    """`keeps_fresh`: the catalog's freshness minus its sync interval; a failed pull with a Complete read of
    its type within it before is left to Codat's next sync (None: every failed pull marks its company)."""
    effects = Effects()
    marks: list[tuple[str, str]] = []
    if not parsed.reads.empty:
        _apply_reads(db, parsed.reads, effects, marks, keeps_fresh)
    if not parsed.connections.empty:
        plan = _plan(db, parsed.connections)
        _apply_connections(db, plan, effects)
        marks += [(c, "connection_change") for c in set(parsed.connections["company_id"].dropna())]
    if not parsed.deleted_companies.empty:
        latest = parsed.deleted_companies.groupby("company_id")["generated_at"].max()
        rows = [{"b_id": c, "deleted_at": at.to_pydatetime()} for c, at in latest.items()]
        statement = update(Company).where(Company.id == bindparam("b_id"), Company.deleted_at.is_(None))
        effects.companies_deleted = db.execute(statement.values(deleted_at=bindparam("deleted_at")), rows).rowcount
    marks += [(c, "company_change") for c in parsed.company_changes]
    marks += [(c, "processing_failed") for c in parsed.malformed]
    for company_id, reason in marks:
        effects.marked.setdefault(reason, []).append(company_id)
    effects.marked = {reason: sorted(set(ids)) for reason, ids in sorted(effects.marked.items())}
    mark(db, marks, now)
    return effects


def _apply_reads(
    db: Db, reads: pd.DataFrame, effects: Effects, marks: list[tuple[str, str]], keeps_fresh: timedelta | None
) -> None:
    ids = sorted(set(reads["connection_id"]))
    query = select(*SNAPSHOT_COLUMNS, Connection.last_read_at).join(Company, Company.id == Connection.company_id)
    snapshot = select_frame(db, query, Connection.id, ids)
    snapshot["last_read_at"] = pd.to_datetime(snapshot["last_read_at"], utc=True)
    events = load_events(db, sorted(set(snapshot["company_id"])))
    verdicts = judge_reads(reads, snapshot, events)
    judged = verdicts.reads
    table = ReadObservation.__table__
    target, rows = bindable(db, table, judged[[c.key for c in table.c]])
    if rows:
        statement = dialect_insert(db, target).on_conflict_do_nothing(
            index_elements=["event_id", "connection_id", "data_type"]
        )
        db.execute(statement, rows)
    effects.observations = len(judged)
    moved = last_reads(judged, snapshot[["id", "last_read_at"]])
    if not moved.empty:
        statement = update(Connection).where(Connection.id == bindparam("b_id"))
        db.execute(statement.values(last_read_at=bindparam("last_read_at")),
                   [{"b_id": i, "last_read_at": t.to_pydatetime()} for i, t in zip(moved["id"], moved["last_read_at"],
                                                                                  strict=True)])
    effects.violations = int(judged["violation"].sum())
    effects.violating_companies = verdicts.companies("violation")
    marks += [(c, "violation") for c in effects.violating_companies]
    successes = _last_successes(db, judged) if keeps_fresh is not None and judged["failed"].any() else None
    window = pd.Timedelta(keeps_fresh) if keeps_fresh is not None else None
    marks += [(c, "failed_pull") for c in stale_failures(judged, successes, window)]
    unknown = judged.loc[~judged["known"].to_numpy(dtype=bool), "company_id"].dropna()
    marks += [(c, "connection_change") for c in sorted(set(unknown))]


def _last_successes(db: Db, judged: pd.DataFrame) -> pd.DataFrame:
    """(connection_id, data_type, last_success): the latest Complete read of each (connection, data type) of the
    batch's failed reads, from read observations (this batch's included: they are inserted first) and the
    pulls the reconciliation stored."""
    ids = sorted(set(judged.loc[judged["failed"].to_numpy(dtype=bool), "connection_id"]))
    observed = select(ReadObservation.connection_id, ReadObservation.data_type,
                      func.max(ReadObservation.generated_at).label("last_success"))
    observed = observed.where(ReadObservation.status == COMPLETE).group_by(
        ReadObservation.connection_id, ReadObservation.data_type)
    pulled = select(PullRecord.connection_id, PullRecord.data_type, func.max(PullRecord.completed).label("last_success"))
    pulled = pulled.where(PullRecord.status == COMPLETE).group_by(PullRecord.connection_id, PullRecord.data_type)
    frames = [select_frame(db, observed, ReadObservation.connection_id, ids),
              select_frame(db, pulled, PullRecord.connection_id, ids)]
    both = pd.concat(frames, ignore_index=True)
    both["last_success"] = pd.to_datetime(both["last_success"], utc=True)
    return both.groupby(["connection_id", "data_type"], as_index=False)["last_success"].max()


def _plan(db: Db, changes: pd.DataFrame) -> ConnectionPlan:
    stored = select_frame(db, select(*_STATE), Connection.id, sorted(set(changes["id"])))
    for column in ("state_at", "last_authorized_at", "status_changed_at"):
        stored[column] = pd.to_datetime(stored[column], utc=True)
    companies = set(db.scalars(select(Company.id).where(Company.id.in_(sorted(set(changes["company_id"].dropna()))))))
    return plan_connections(changes, stored, companies)


def _apply_connections(db: Db, plan: ConnectionPlan, effects: Effects) -> None:
    effects.stale_connection_events = plan.stale
    if not plan.updates.empty:
        target, bound = bindable(db, Connection.__table__, plan.updates)
        bound = [{**row, "b_id": row.pop("id")} for row in bound]
        columns = [c for c in plan.updates.columns if c != "id"]
        statement = update(target).where(target.c.id == bindparam("b_id"))
        statement = statement.values({c: bindparam(c) for c in columns})
        effects.connections_updated = db.execute(statement, bound).rowcount
    if not plan.inserts.empty:
        target, bound = bindable(db, Connection.__table__, plan.inserts)
        effects.connections_inserted = insert_new(db, target, bound, key="id")
