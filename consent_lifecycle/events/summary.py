"""What a `codat-events` run came to (its result, `consent run codat-events --json`), and its markdown."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from consent_lifecycle.events.parse import KNOWN


@dataclass(frozen=True)
class EventsSummary:
    as_of: str
    #: events marked done, by event type
    processed: dict[str, int] = field(default_factory=dict)
    #: events of types we do not act on (stored, marked done)
    ignored: int = 0
    read_observations: int = 0
    violations: int = 0
    #: companies reconciled at once in this run (those with a violation)
    reconciled_at_once: list[str] = field(default_factory=list)
    #: companies marked for the next reconciliation, by reason
    marked: dict[str, int] = field(default_factory=dict)
    connections_updated: int = 0
    connections_inserted: int = 0
    stale_connection_events: int = 0
    companies_deleted: int = 0
    batches: int = 0
    #: events whose batch failed: back to pending (retried) or failed for good
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    #: requests made to Codat (the reconciliation of violating companies)
    codat_requests: int = 0

    @property
    def events(self) -> int:
        return sum(self.processed.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "events": self.events}

    @classmethod
    def of(cls, as_of: str, batches: Iterable[dict[str, Any]], **extra: Any) -> EventsSummary:
        """Sum the per-batch dicts the tasks return."""
        processed: dict[str, int] = {}
        marked: dict[str, set[str]] = {}
        totals = dict.fromkeys(("read_observations", "violations", "connections_updated", "connections_inserted",
                                "stale_connection_events", "companies_deleted", "retried", "failed"), 0)
        errors: list[str] = []
        count = 0
        for batch in batches:
            count += 1
            for kind, n in batch.get("processed", {}).items():
                processed[kind] = processed.get(kind, 0) + n
            for reason, ids in batch.get("marked", {}).items():
                marked.setdefault(reason, set()).update(ids)
            for key in totals:
                totals[key] += batch.get(key, 0)
            errors += [batch["error"]] if batch.get("error") else []
        ignored = sum(n for kind, n in processed.items() if kind not in KNOWN)
        return cls(
            as_of=as_of, processed=dict(sorted(processed.items())), ignored=ignored,
            marked={reason: len(ids) for reason, ids in sorted(marked.items())}, batches=count, errors=errors,
            **totals, **extra,
        )

    def markdown(self) -> str:
        lines = [f"# Codat events, {self.as_of}", "", "| event type | processed |", "|---|---|"]
        lines += [f"| {kind} | {n} |" for kind, n in self.processed.items()] or ["| (none) | 0 |"]
        lines += ["", "| outcome | count |", "|---|---|"]
        outcomes = {
            "read entries observed": self.read_observations, "violations": self.violations,
            "companies reconciled at once": len(self.reconciled_at_once),
            "connections updated": self.connections_updated, "connections added": self.connections_inserted,
            "older connection events not applied": self.stale_connection_events,
            "companies deleted": self.companies_deleted, "events ignored (unknown type)": self.ignored,
            "events retried": self.retried, "events failed": self.failed, "Codat requests": self.codat_requests,
            **{f"companies marked: {reason}": n for reason, n in self.marked.items()},
        }
        lines += [f"| {name} | {n} |" for name, n in outcomes.items()]
        return "\n".join(lines)
