"""Inbox rows (their stored bodies) into frames, one per kind of effect (pure).

Decoding each body is per event by nature; everything after it works on whole columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

READS = frozenset({"read.completed", "read.completed.initial"})
CONNECTIONS = frozenset({
    "connection.created", "connection.connected", "connection.disconnected", "connection.reconnected",
    "connection.failed", "connection.deleted",
})
COMPANY_DELETED = "company.deleted"
COMPANY_CHANGES = frozenset({"company.created", "company.product.added", "company.product.removed"})
KNOWN = READS | CONNECTIONS | COMPANY_CHANGES | {COMPANY_DELETED}

INBOX_COLUMNS = ["id", "event_type", "company_id", "generated_at", "body"]
READ_COLUMNS = ["event_id", "company_id", "connection_id", "data_type", "status", "records_modified", "generated_at"]
CONNECTION_COLUMNS = [
    "event_id", "event_type", "company_id", "generated_at", "id", "source_type", "platform_name",
    "integration_key", "status", "link_url", "created_at", "last_sync_at",
]
#: Codat's Connection fields, in CONNECTION_COLUMNS' order from `id`
_CONNECTION_FIELDS = ["id", "sourceType", "platformName", "integrationKey", "status", "linkUrl", "created", "lastSync"]


@dataclass(frozen=True)
class Parsed:
    """One batch of inbox events: `reads` one row per dataTypes entry, `connections` one row per connection
    event, `deleted_companies` (company_id, generated_at), `company_changes` company ids, `malformed` the
    company ids of events whose payload could not be read, `counts` events by type."""

    reads: pd.DataFrame
    connections: pd.DataFrame
    deleted_companies: pd.DataFrame
    company_changes: list[str]
    malformed: list[str]
    counts: dict[str, int]


def parse(events: pd.DataFrame) -> Parsed:
    """Frames from inbox rows (INBOX_COLUMNS, times aware UTC)."""
    payloads = [_payload(body) for body in events["body"]]
    kinds = events["event_type"].to_numpy()
    ids, companies, times = events["id"].tolist(), events["company_id"].tolist(), events["generated_at"].tolist()
    read_rows, connection_rows, malformed = [], [], []
    for event_id, kind, company, at, payload in zip(ids, kinds, companies, times, payloads, strict=True):
        if kind in READS:
            entries = payload.get("dataTypes")
            if not isinstance(entries, list):
                malformed.append(company)
                continue
            for entry in entries:
                if not isinstance(entry, dict) or not entry.get("connectionId") or not entry.get("dataType"):
                    malformed.append(company)
                    continue
                read_rows.append((event_id, company, str(entry["connectionId"]), str(entry["dataType"]),
                                  str(entry.get("status") or ""), entry.get("recordsModified"), at))
        elif kind in CONNECTIONS:
            connection = payload.get("connection")
            if not isinstance(connection, dict) or not connection.get("id"):
                malformed.append(company)
                continue
            connection_rows.append((event_id, kind, company, at, *(connection.get(f) for f in _CONNECTION_FIELDS)))
    reads = pd.DataFrame.from_records(read_rows, columns=READ_COLUMNS)
    reads["records_modified"] = pd.to_numeric(reads["records_modified"], errors="coerce").astype("Int64")
    connections = pd.DataFrame.from_records(connection_rows, columns=CONNECTION_COLUMNS)
    for column in ("created_at", "last_sync_at"):
        connections[column] = pd.to_datetime(connections[column], utc=True, format="ISO8601", errors="coerce")
    for frame in (reads, connections):
        frame["generated_at"] = pd.to_datetime(frame["generated_at"], utc=True)
    deleted = events.loc[(events["event_type"] == COMPANY_DELETED).to_numpy(), ["company_id", "generated_at"]]
    changes = events.loc[events["event_type"].isin(COMPANY_CHANGES).to_numpy(), "company_id"]
    return Parsed(
        reads=reads, connections=connections,
        deleted_companies=deleted.dropna(subset=["company_id"]).reset_index(drop=True),
        company_changes=sorted(set(changes.dropna())), malformed=sorted({c for c in malformed if c}),
        counts={str(k): int(v) for k, v in events["event_type"].value_counts().sort_index().items()},
    )


def _payload(body: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    payload = data.get("payload") if isinstance(data, dict) else None
    return payload if isinstance(payload, dict) else {}
