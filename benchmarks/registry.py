"""The flows of the nightly cycle the benchmark runs: one `FlowSpec` per flow, keyed by its Prefect name.

`FLOWS` is in cycle order (expiry scan, reconciliation, retention), and `benchmarks.bench` runs the chosen
ones in that order against one sandbox and one database per size. To benchmark another flow, add one
entry: where the flow is, the parameters it is called with (given the sandbox's frozen `now`), a one-line
outcome read from the summary it returns, and what it needs first:

- `needs_consents`: the ledger is seeded (`benchmarks._seed_consents`, not timed as a flow) before it;
- `rerun`: it runs a second time right after the first (the second scan should queue no notification);
- `raw_page_size`: it pages `/companies` at that size, so raw httpx paging of the same pages is timed too.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Summary = Any  # what the flow returns: its summary dataclass


@dataclass(frozen=True)
class FlowSpec:
    name: str
    entrypoint: str  # "package.module:flow_function"
    parameters: Callable[[datetime], dict[str, Any]]
    outcome: Callable[[Summary], str]  # what the run did, in a few words, for the table
    rerun_outcome: Callable[[Summary], str] | None = None  # the same for the rerun, when `rerun`
    needs_consents: bool = False
    rerun: bool = False
    raw_page_size: int | None = None

    def load(self) -> Any:
        """The Prefect flow object (imports Prefect and the flow's module)."""
        module, _, attribute = self.entrypoint.partition(":")
        return getattr(importlib.import_module(module), attribute)


EXPIRY_SCAN_PAGE_SIZE = 5000


def _expiry_scan_parameters(now: datetime) -> dict[str, Any]:
    return {"now": now, "page_size": EXPIRY_SCAN_PAGE_SIZE}


def _expiry_scan_outcome(summary: Summary) -> str:
    connections = sum(summary.classes.values())
    return f"{connections} connections, {summary.notifications_queued or 0} queued"


def _expiry_scan_rerun_outcome(summary: Summary) -> str:
    return f"rerun queued {summary.notifications_queued or 0}"


def _reconciliation_parameters(now: datetime) -> dict[str, Any]:
    return {"now": now, "dry_run": False}  # incremental: on night 1 every company is never_reconciled


def _full_reconciliation_parameters(now: datetime) -> dict[str, Any]:
    return {"now": now, "dry_run": False, "full": True}


def _reconciliation_outcome(summary: Summary) -> str:
    findings = sum(summary.findings.values())
    return (
        f"{summary.selection}: {summary.companies} companies, {summary.codat_requests} requests, "
        f"{summary.pulls_read} pulls read, {findings} findings, "
        f"{summary.sync_settings_set} settings set, {summary.pulls_queued} pulls queued, "
        f"{summary.deletion_items_opened} deletion items"
    )


def _retention_parameters(now: datetime) -> dict[str, Any]:
    return {"now": now, "dry_run": True}  # never delete at Codat: that would change the world measured


def _retention_outcome(summary: Summary) -> str:
    return f"{summary.planned_new} planned, {summary.due} due, {summary.held} held (dry run)"


FLOWS: dict[str, FlowSpec] = {
    spec.name: spec
    for spec in (
        FlowSpec(
            name="connection-expiry-scan",
            entrypoint="flows.connection_expiry_scan:connection_expiry_scan",
            parameters=_expiry_scan_parameters,
            outcome=_expiry_scan_outcome,
            rerun_outcome=_expiry_scan_rerun_outcome,
            rerun=True,
            raw_page_size=EXPIRY_SCAN_PAGE_SIZE,
        ),
        FlowSpec(
            name="consent-reconciliation",
            entrypoint="flows.consent_reconciliation:consent_reconciliation",
            parameters=_reconciliation_parameters,
            outcome=_reconciliation_outcome,
            needs_consents=True,
        ),
        FlowSpec(
            name="retention-enforcement",
            entrypoint="flows.retention_enforcement:retention_enforcement",
            parameters=_retention_parameters,
            outcome=_retention_outcome,
            needs_consents=True,
        ),
    )
}
def _events_parameters(now: datetime) -> dict[str, Any]:
    return {"now": now}


def _events_outcome(summary: Summary) -> str:
    events = sum((summary.processed or {}).values())
    return (
        f"{events} events, {summary.violations} violations, {len(summary.reconciled_at_once or [])} companies "
        f"reconciled at once, {summary.codat_requests} requests, marked {summary.marked}"
    )


#: flows the nightly cycle does not run by default, that other benchmarks name (benchmarks.incremental_bench)
VARIANTS: dict[str, FlowSpec] = {
    "consent-reconciliation-full": FlowSpec(
        name="consent-reconciliation-full",
        entrypoint="flows.consent_reconciliation:consent_reconciliation",
        parameters=_full_reconciliation_parameters,
        outcome=_reconciliation_outcome,
        needs_consents=True,
    ),
    "codat-events": FlowSpec(
        name="codat-events",
        entrypoint="flows.codat_events:codat_events",
        parameters=_events_parameters,
        outcome=_events_outcome,
        needs_consents=True,
    ),
}
#: the flow that writes the snapshot the ledger needs (a grant refuses a company not in the snapshot)
SNAPSHOT_FLOW = "connection-expiry-scan"
