"""Writing observations into the company and connection snapshot (bulk upserts, one transaction each)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection as DbConnection
from sqlalchemy import Engine, String, func, select, type_coerce, update

from consent_lifecycle.batching import batched
from consent_lifecycle.db.bulk import CHUNK, select_rows, update_in, upsert_frame
from consent_lifecycle.db.models import Company, Connection
from consent_lifecycle.db.types import UTCDateTime
from consent_lifecycle.snapshot.observe import Observation, merge_observation, vanished


@dataclass(frozen=True)
class SnapshotChange:
    companies: int
    connection_count: int
    new: int
    changed: int
    vanished: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class SyncSummary:
    """What a sync of the snapshot came to (snapshot-sync's result): the changes summed over its batches,
    companies retired (None when only named companies were read) and live connections by source type and
    status (`connection_counts`)."""

    as_of: str
    companies: int
    connection_count: int
    new: int
    changed: int
    vanished: int
    connections: list[dict[str, Any]]
    retired_companies: int | None = None

    @classmethod
    def of(cls, changes: Sequence[SnapshotChange], *, as_of: str, connections: list[dict[str, Any]],
           retired_companies: int | None = None) -> SyncSummary:
        totals = {key: sum(getattr(c, key) for c in changes) for key in ("companies", "connection_count", "new",
                                                                        "changed", "vanished")}
        return cls(as_of=as_of, connections=connections, retired_companies=retired_companies, **totals)


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
    jurisdiction and re-consent links.

    Only rows that are new or differ from the stored ones are upserted (compared set-wise, column by
    column); the others get `last_seen_at = now` in one UPDATE per chunk of ids."""
    company_ids = observation.company_ids
    with engine.begin() as db:
        previous = _connection_state(db, company_ids)
        merged = merge_observation(previous, observation.connections, now)
        gone = vanished(previous, observation.connections, company_ids).tolist()
        if not dry_run:
            _write_companies(db, observation.companies, now)
            _write_connections(db, merged, previous, now)
            for ids in batched(gone, CHUNK):
                db.execute(
                    update(Connection)
                    .where(Connection.id.in_(ids), Connection.deleted_at.is_(None))
                    .values(deleted_at=now, status_changed_at=now, state_at=now)
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
        observation.companies[["id", "name", "jurisdiction", "redirect"]].rename(
            columns={"id": "company_id", "name": "company"}
        ),
        on="company_id",
        how="left",
    )
    return change, scanned


def _write_companies(db: DbConnection, companies: pd.DataFrame, now: datetime) -> None:
    """Upsert the observed companies that are new, differ from the stored row or were deleted; the rest
    only get `last_seen_at`."""
    stored = _stored(db, [Company.id, *_COMPANY_COMPARED, Company.deleted_at], companies["id"])
    fresh = _differs(companies, stored, [c.key for c in _COMPANY_COMPARED]) | stored["deleted_at"].notna().to_numpy()
    upsert_frame(
        db, Company.__table__, _company_rows(companies[fresh.to_numpy()], now), key="id", keep=("first_seen_at",)
    )
    update_in(db, Company.__table__, "id", companies.loc[~fresh.to_numpy(), "id"].tolist(), {"last_seen_at": now})


def _write_connections(db: DbConnection, merged: pd.DataFrame, previous: pd.DataFrame, now: datetime) -> None:
    """Upsert the observed connections that are new or differ from the stored row in a written column;
    the rest only get `last_seen_at`."""
    stored = previous.assign(**{_FOUND: True}).set_index("id").reindex(merged["id"].to_numpy()).reset_index()
    fresh = _differs(merged, stored, _CONNECTION_COMPARED).to_numpy()
    # `state_at`: the state written is the scan's, as of `now` (an older connection event will not overwrite it)
    written = merged.loc[fresh, _CONNECTION_WRITE].assign(state_at=pd.Timestamp(now))
    upsert_frame(db, Connection.__table__, written, key="id", keep=("last_reconfirmed_at",))
    update_in(db, Connection.__table__, "id", merged.loc[~fresh, "id"].tolist(), {"last_seen_at": now, "state_at": now})


def _differs(observed: pd.DataFrame, stored: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Per row of `observed`: True when the row is not stored (`stored`, aligned with `observed` row by
    row, has no `_FOUND` there) or any of `columns` differs. Missing equals missing; times are compared at
    the microsecond, what the database keeps."""
    differs = pd.Series(stored[_FOUND].isna().to_numpy(), index=observed.index)
    for column in columns:
        ours = _comparable(observed[column])
        theirs = _comparable(stored[column]).set_axis(observed.index)
        same = (ours == theirs).fillna(False).astype(bool) | (ours.isna() & theirs.isna())
        differs |= ~same
    return differs


def _comparable(column: pd.Series) -> pd.Series:
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return column.dt.floor("us")
    return column


def _stored(db: DbConnection, columns: list[Any], ids: pd.Series) -> pd.DataFrame:
    """The stored rows of `ids` (`columns`, the key first), aligned with `ids`: all missing where none."""
    key = columns[0].key
    frame = _read(db, columns, columns[0], ids.tolist()).assign(**{_FOUND: True})
    return frame.set_index(key).reindex(ids.to_numpy()).reset_index(names=key)


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


def company_names(engine: Engine, company_ids: Sequence[str]) -> dict[str, str]:
    """The snapshot's name of each of `company_ids` it knows (for the operator's tables, beside the ids)."""
    with engine.connect() as db:
        return dict(select_rows(db, select(Company.id, Company.name), Company.id, list(company_ids)))


def connections_for_expiry(engine: Engine) -> pd.DataFrame:
    """The live connections with what the expiry model and the operator's table read: id, company_id, company
    (its name), platform_name, source_type, status, jurisdiction, created_at, last_sync_at,
    last_authorized_at, last_reconfirmed_at, status_changed_at."""
    columns = [
        Connection.id, Connection.company_id, Company.name.label("company"), Connection.platform_name,
        Connection.source_type, Connection.status, Company.jurisdiction, Connection.created_at,
        Connection.last_sync_at, Connection.last_authorized_at, Connection.last_reconfirmed_at,
        Connection.status_changed_at,
    ]
    query = (
        select(*columns).join(Company, Company.id == Connection.company_id).where(Connection.deleted_at.is_(None))
    )
    with engine.connect() as db:
        frame = pd.DataFrame.from_records(db.execute(query).all(), columns=[c.key for c in columns])
    for column in ("created_at", "last_sync_at", "last_authorized_at", "last_reconfirmed_at", "status_changed_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


# -- helpers ---------------------------------------------------------------------------------------

_CONNECTION_WRITE = [
    "id", "company_id", "source_type", "platform_name", "integration_key", "status", "link_url",
    "created_at", "last_sync_at", "first_seen_at", "last_seen_at", "status_changed_at", "last_authorized_at",
]
#: a column marking rows read back from the database (missing after a reindex: not stored)
_FOUND = "_stored"
#: what a rescan compares to decide whether a connection's row must be written again
_CONNECTION_COMPARED = [c for c in _CONNECTION_WRITE if c not in ("id", "last_seen_at")]
_STATE = [
    Connection.id, Connection.company_id, Connection.source_type, Connection.platform_name,
    Connection.integration_key, Connection.status, Connection.link_url, Connection.created_at,
    Connection.last_sync_at, Connection.first_seen_at, Connection.status_changed_at,
    Connection.last_authorized_at, Connection.last_reconfirmed_at,
]
_COMPANY_COMPARED = [
    Company.name, Company.jurisdiction, Company.tags, Company.redirect, Company.created_at, Company.last_sync_at,
]


def _connection_state(db: DbConnection, company_ids: Sequence[str]) -> pd.DataFrame:
    return _read(db, _STATE, Connection.company_id, company_ids)


def _read(db: DbConnection, columns: list[Any], by: Any, keys: Sequence[Any]) -> pd.DataFrame:
    """`columns` of the rows whose `by` is in `keys` (chunked), as a frame with times as UTC datetimes.

    Times are read as the driver returns them (SQLite: text, PostgreSQL: aware datetimes) and converted
    per column, not per value through the column type; rows go to pandas as plain tuples."""
    selected = [type_coerce(c, String).label(c.key) if isinstance(c.type, UTCDateTime) else c for c in columns]
    rows = [
        tuple(row)
        for chunk in batched(list(keys), CHUNK)
        for row in db.execute(select(*selected).where(by.in_(chunk))).all()
    ]
    frame = pd.DataFrame.from_records(rows, columns=[c.key for c in columns])
    for column in columns:
        if isinstance(column.type, UTCDateTime):
            frame[column.key] = pd.to_datetime(frame[column.key], utc=True, format="ISO8601")
    return frame


def _company_rows(companies: pd.DataFrame, now: datetime) -> pd.DataFrame:
    frame = companies.assign(first_seen_at=pd.Timestamp(now), last_seen_at=pd.Timestamp(now), deleted_at=pd.NaT)
    frame["deleted_at"] = pd.to_datetime(frame["deleted_at"], utc=True)
    return frame[[*companies.columns, "first_seen_at", "last_seen_at", "deleted_at"]]
