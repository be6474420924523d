"""Reconciliation's reads and writes: the batch's observed state, pulls seen, findings, deletion items.

Findings are upserted by key: a new one is inserted, one seen again gets `last_seen_at` (and an occurrence
when it is seen at a later moment), a resolved one seen again is reopened; a present-state finding (sync
setting, missing pull) of a checked company that was not found again is resolved. Facts about one pull or
read keep the time of that pull or read, so rerunning a window writes exactly what the first run did.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection as Db
from sqlalchemy import and_, case, func, select, update

from consent_lifecycle.batching import batched
from consent_lifecycle.db.bulk import (
    CHUNK,
    bindable,
    dialect_insert,
    insert_new,
    select_frame,
    upsert,
    upsert_frame,
)
from consent_lifecycle.db.models import (
    AccessRecord,
    Company,
    Connection,
    ConsentEvent,
    DeletionItem,
    Finding,
    PullRecord,
    ReconcileCursor,
    ReconcileMark,
)
from consent_lifecycle.ledger import load_events
from consent_lifecycle.reconcile.check import Observed
from consent_lifecycle.reconcile.diff import PULL_COLUMNS, READ_COLUMNS, SETTING_COLUMNS, STATE_KINDS
from consent_lifecycle.reconcile.select import SelectionInputs

UNCONSENTED_PULL = "unconsented_pull"

SNAPSHOT_COLUMNS = [
    Connection.id,
    Connection.company_id,
    Connection.source_type,
    Connection.status,
    Connection.deleted_at,
    Company.jurisdiction,
    Connection.created_at,
    Connection.last_sync_at,
    Connection.last_authorized_at,
    Connection.last_reconfirmed_at,
    Connection.status_changed_at,
]
_TIMES = (
    "deleted_at",
    "created_at",
    "last_sync_at",
    "last_authorized_at",
    "last_reconfirmed_at",
    "status_changed_at",
)


def active_company_ids(db: Db) -> list[str]:
    """Companies in the snapshot and not deleted at Codat, in id order."""
    return list(db.scalars(select(Company.id).where(Company.deleted_at.is_(None)).order_by(Company.id)))


def selection_inputs(db: Db) -> SelectionInputs:
    """What `select_companies` decides from, in six set-based queries (no per-company statement)."""
    companies = select_frame(
        db, select(Company.id.label("company_id"), Company.last_sync_at).where(Company.deleted_at.is_(None))
    )
    cursors = select_frame(db, select(ReconcileCursor.company_id, ReconcileCursor.reconciled_at))
    marks = select_frame(db, select(ReconcileMark.company_id, ReconcileMark.reasons))
    changes = select_frame(
        db,
        select(ConsentEvent.company_id, func.max(ConsentEvent.recorded_at).label("recorded_at")).group_by(
            ConsentEvent.company_id
        ),
    )
    connections = select_frame(
        db,
        select(Connection.company_id, Connection.last_sync_at, Connection.last_read_at).where(
            Connection.deleted_at.is_(None), Connection.last_sync_at.is_not(None)
        ),
    )
    in_flight = select_frame(
        db, select(PullRecord.company_id).where(PullRecord.completed.is_(None)).distinct()
    )
    return SelectionInputs(
        companies=_times(companies, ("last_sync_at",)),
        cursors=_times(cursors, ("reconciled_at",)),
        marks=marks,
        consent_changes=_times(changes, ("recorded_at",)),
        connections=_times(connections, ("last_sync_at", "last_read_at")),
        in_flight=in_flight,
    )


def cursors(db: Db, company_ids: Sequence[str]) -> dict[str, datetime]:
    rows = []
    for ids in batched(list(company_ids), CHUNK):
        query = select(ReconcileCursor.company_id, ReconcileCursor.pulls_seen_to)
        rows += db.execute(query.where(ReconcileCursor.company_id.in_(ids))).all()
    return dict(rows)


def load_observed(
    db: Db, company_ids: Sequence[str], settings: pd.DataFrame, fetched_pulls: pd.DataFrame
) -> Observed:
    """Our side of the batch (ledger, snapshot, every pull seen, reads) with Codat's settings and new pulls."""
    ids = list(company_ids)
    stored = select_frame(
        db, select(*[c for c in PullRecord.__table__.c if c.key in PULL_COLUMNS]), PullRecord.company_id, ids
    )
    pulls = pd.concat([stored[~stored["id"].isin(fetched_pulls["id"])], fetched_pulls], ignore_index=True)
    snapshot = select(*SNAPSHOT_COLUMNS).join(Company, Company.id == Connection.company_id)
    connections = select_frame(db, snapshot, Connection.company_id, ids)
    reads = select_frame(
        db, select(*[AccessRecord.__table__.c[c] for c in READ_COLUMNS]), AccessRecord.company_id, ids
    )
    return Observed(
        company_ids=ids,
        settings=settings.reindex(columns=SETTING_COLUMNS),
        pulls=_times(pulls.reindex(columns=PULL_COLUMNS), ("requested", "completed")),
        reads=_times(reads, ("at",)),
        events=load_events(db, ids),
        connections=_times(connections, _TIMES),
    )


def store_pulls(db: Db, pulls: pd.DataFrame, now: datetime) -> None:
    """Upsert the pulls read (as last seen, at `now`), column-wise: no per-row conversion in Python."""
    frame = pulls[PULL_COLUMNS].assign(seen_at=pd.Timestamp(now))
    upsert_frame(db, PullRecord.__table__, frame, key="id")


def advance_cursors(db: Db, company_ids: Sequence[str], seen_to: datetime, now: datetime) -> None:
    rows = [{"company_id": c, "pulls_seen_to": seen_to, "reconciled_at": now} for c in company_ids]
    upsert(db, ReconcileCursor.__table__, rows, key="company_id")


def store_findings(
    db: Db,
    findings: pd.DataFrame,
    company_ids: Sequence[str],
    kinds: Sequence[str],
    now: datetime,
    refetched: Collection[str] | None = None,
) -> dict[str, int]:
    """Upsert `findings`; resolve the checked companies' present-state findings not found again.

    `refetched`, when given, holds the ids of the pulls read from Codat this run. An unconsented_pull
    finding already stored whose pull was not read again is not written again: its time is the pull's
    `requested` and its detail the pull's id and stored status, so the upsert would change nothing. (Every
    pull seen is judged again each run: without this, each night rewrote every such finding ever found.)"""
    table = Finding.__table__
    frame = findings.rename(columns={"seen_at": "last_seen_at"})
    keys = set(frame["key"])
    existing = _existing_keys(db, list(keys))
    if refetched is not None and existing:
        pull_ids = frame["key"].str.slice(len(UNCONSENTED_PULL) + 1)
        unchanged = (
            (frame["kind"] == UNCONSENTED_PULL).to_numpy()
            & frame["key"].isin(existing).to_numpy()
            & ~pull_ids.isin(refetched).to_numpy()
        )
        frame = frame[~unchanged]
    frame = frame.assign(first_seen_at=frame["last_seen_at"], resolved_at=None, occurrences=1)
    target, rows = bindable(db, table, frame)
    if rows:
        # one statement, compiled once, executed over every row
        statement = dialect_insert(db, target)
        later = statement.excluded.last_seen_at > target.c.last_seen_at
        db.execute(
            statement.on_conflict_do_update(
                index_elements=[target.c.key],
                set_={
                    "last_seen_at": case(
                        (later, statement.excluded.last_seen_at), else_=target.c.last_seen_at
                    ),
                    "occurrences": case((later, target.c.occurrences + 1), else_=target.c.occurrences),
                    "resolved_at": None,
                    "detail": statement.excluded.detail,
                },
            ),
            rows,
        )
    resolved = 0
    state_kinds = [k for k in kinds if k in STATE_KINDS]
    for ids in batched(list(company_ids), 500):
        open_state = db.execute(
            select(Finding.id, Finding.key).where(
                Finding.company_id.in_(ids), Finding.kind.in_(state_kinds), Finding.resolved_at.is_(None)
            )
        ).all()
        gone = [fid for fid, key in open_state if key not in keys]
        for batch in batched(gone, 500):
            resolved += db.execute(
                update(Finding).where(Finding.id.in_(batch)).values(resolved_at=now)
            ).rowcount
    return {"found": len(findings), "new": len(keys - existing), "resolved": resolved}


def resolve_remediated(db: Db, settings_set: Sequence[str], queued: pd.DataFrame, now: datetime) -> int:
    """Resolve the findings a remediation just made untrue, as a read right after it would: the open
    unconsented_sync_setting findings of the companies whose sync settings were set to exactly their entitled
    types, and the missing_pull findings of each (company, connection, data type) with a pull now queued or in
    flight (a pull in flight is not missing). Without this they stayed open until that company's next read,
    a sweep away on an incremental night. A later read that finds them again opens them again. Returns how
    many were resolved."""
    resolved = 0
    for ids in batched(list(settings_set), 500):
        resolved += db.execute(
            update(Finding)
            .where(Finding.company_id.in_(ids), Finding.kind == "unconsented_sync_setting", Finding.resolved_at.is_(None))
            .values(resolved_at=now)
        ).rowcount
    keys = ("missing_pull:" + queued["company_id"] + ":" + queued["connection_id"] + ":" + queued["data_type"]).tolist()
    for batch in batched(keys, 500):
        resolved += db.execute(
            update(Finding).where(Finding.key.in_(batch), Finding.resolved_at.is_(None)).values(resolved_at=now)
        ).rowcount
    return resolved


def open_deletions(db: Db, deletions: pd.DataFrame, now: datetime) -> int:
    """A deletion item (local store, due now) per pull completed without consent; returns how many were new."""
    if deletions.empty:
        return 0
    known = set(_ids(db, Connection, set(deletions["connection_id"])))
    kept = deletions[deletions["connection_id"].isin(known)]
    if kept.empty:
        return 0
    frame = pd.DataFrame(
        {
            "key": "local_store:unconsented_pull:" + kept["pull_id"].astype(str),
            "company_id": kept["company_id"],
            "connection_id": kept["connection_id"],
            "data_type": kept["data_type"],
            "scope": "local_store",
            "reason": "unconsented_pull",
            "due_at": pd.Timestamp(now),
            "status": "planned",
            "created_at": pd.Timestamp(now),
            "updated_at": pd.Timestamp(now),
        }
    )
    target, rows = bindable(db, DeletionItem.__table__, frame)
    return insert_new(db, target, rows, key="key")


def list_findings(
    db: Db, *, kind: str | None = None, open_only: bool = False, company_id: str | None = None
) -> list[dict[str, Any]]:
    query = select(Finding.__table__).order_by(Finding.id)
    conditions = []
    if kind is not None:
        conditions.append(Finding.kind == kind)
    if open_only:
        conditions.append(Finding.resolved_at.is_(None))
    if company_id is not None:
        conditions.append(Finding.company_id == company_id)
    if conditions:
        query = query.where(and_(*conditions))
    return [dict(row) for row in db.execute(query).mappings()]


def _existing_keys(db: Db, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in batched(keys, 500):
        found |= set(db.scalars(select(Finding.key).where(Finding.key.in_(chunk))))
    return found


def _ids(db: Db, model: Any, ids: set[str]) -> list[str]:
    return [
        i
        for chunk in batched(sorted(ids), 500)
        for i in db.scalars(select(model.id).where(model.id.in_(chunk)))
    ]


def _times(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    out = frame.copy()
    for column in columns:
        out[column] = pd.to_datetime(out[column], utc=True)
    return out
