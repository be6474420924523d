"""Writing observations into the company and connection snapshot (bulk upserts, one transaction each)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection as DbConnection
from sqlalchemy import Engine, func, select, update

from consent_lifecycle.db.bulk import chunks, records, upsert
from consent_lifecycle.db.models import Company, Connection
from consent_lifecycle.snapshot import Observation, merge_observation, vanished


@dataclass(frozen=True)
class SnapshotChange:
    companies: int
    connection_count: int
    new: int
    changed: int
    vanished: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def apply_observation(engine: Engine, observation: Observation, now: datetime) -> SnapshotChange:
    """Upsert the observed companies and connections; mark connections Codat no longer lists as deleted.

    One transaction: a crash leaves the snapshot as it was, and a rerun of the same observation writes
    the same rows again (idempotent).
    """
    return scan_observation(engine, observation, now)[0]


def scan_observation(
    engine: Engine, observation: Observation, now: datetime, *, dry_run: bool = False
) -> tuple[SnapshotChange, pd.DataFrame]:
    """`apply_observation` (skipped writes when `dry_run`), also returning the observed connections with
    everything the expiry model reads: status, authorization and reconfirmation times, the company's
    jurisdiction and re-consent links."""
    company_ids = observation.company_ids
    with engine.begin() as db:
        previous = _connection_state(db, company_ids)
        merged = merge_observation(previous, observation.connections, now)
        gone = vanished(previous, observation.connections, company_ids).tolist()
        if not dry_run:
            upsert(db, Company.__table__, _company_rows(observation.companies, now), key="id", keep=("first_seen_at",))
            upsert(db, Connection.__table__, records(merged, _CONNECTION_WRITE), key="id", keep=("last_reconfirmed_at",))
            for ids in chunks(gone):
                db.execute(
                    update(Connection)
                    .where(Connection.id.in_(ids), Connection.deleted_at.is_(None))
                    .values(deleted_at=now, status_changed_at=now)
                )
    transitions = merged["transition"].value_counts()
    change = SnapshotChange(
        companies=len(company_ids),
        connection_count=len(merged),
        new=int(transitions.get("new", 0)),
        changed=int(transitions.get("changed", 0)),
        vanished=len(gone),
    )
    scanned = merged.merge(previous[["id", "last_reconfirmed_at"]], on="id", how="left").merge(
        observation.companies[["id", "jurisdiction", "redirect"]].rename(columns={"id": "company_id"}),
        on="company_id",
        how="left",
    )
    return change, scanned


def retire_unseen_companies(engine: Engine, seen_since: datetime) -> int:
    """After a complete scan that started at `seen_since`: companies it did not see are gone at Codat."""
    with engine.begin() as db:
        unseen = select(Company.id).where(Company.last_seen_at < seen_since, Company.deleted_at.is_(None))
        db.execute(
            update(Connection)
            .where(Connection.company_id.in_(unseen), Connection.deleted_at.is_(None))
            .values(deleted_at=seen_since, status_changed_at=seen_since)
        )
        result = db.execute(
            update(Company)
            .where(Company.last_seen_at < seen_since, Company.deleted_at.is_(None))
            .values(deleted_at=seen_since)
        )
    return result.rowcount or 0


def connection_counts(engine: Engine) -> list[dict[str, Any]]:
    """Live connections by source type and status."""
    query = (
        select(Connection.source_type, Connection.status, func.count().label("connections"))
        .where(Connection.deleted_at.is_(None))
        .group_by(Connection.source_type, Connection.status)
        .order_by(Connection.source_type, Connection.status)
    )
    with engine.connect() as db:
        return [dict(row._mapping) for row in db.execute(query)]


# -- helpers ---------------------------------------------------------------------------------------

_CONNECTION_WRITE = [
    "id", "company_id", "source_type", "platform_name", "integration_key", "status", "link_url",
    "created_at", "last_sync_at", "first_seen_at", "last_seen_at", "status_changed_at", "last_authorized_at",
]
_STATE = [
    Connection.id, Connection.company_id, Connection.status, Connection.first_seen_at,
    Connection.status_changed_at, Connection.last_authorized_at, Connection.last_reconfirmed_at,
]


def _connection_state(db: DbConnection, company_ids: Sequence[str]) -> pd.DataFrame:
    rows = [
        row
        for ids in chunks(company_ids)
        for row in db.execute(select(*_STATE).where(Connection.company_id.in_(ids))).all()
    ]
    frame = pd.DataFrame.from_records(rows, columns=[c.key for c in _STATE])
    for column in ("first_seen_at", "status_changed_at", "last_authorized_at", "last_reconfirmed_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _company_rows(companies: pd.DataFrame, now: datetime) -> list[dict[str, Any]]:
    frame = companies.assign(first_seen_at=pd.Timestamp(now), last_seen_at=pd.Timestamp(now), deleted_at=None)
    return records(frame, [*companies.columns, "first_seen_at", "last_seen_at", "deleted_at"])
