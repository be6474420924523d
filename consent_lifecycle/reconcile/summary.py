"""What reconciling a batch came to, what the run keeps of it, and the run's summary (the flow's result,
what the CLI prints)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from consent_lifecycle.clock import iso
from consent_lifecycle.db.models import FINDING_KINDS
from consent_lifecycle.reconcile.check import Reconciliation


@dataclass(frozen=True)
class CodatState:
    """What Codat said about one batch: sync settings, pull history, companies it no longer has, and the
    requests that took (`requests` by company id, `requests_sent` in all, retries included)."""

    settings: pd.DataFrame
    pulls: pd.DataFrame
    gone: list[str]
    requests: dict[str, int] = field(default_factory=dict)
    requests_sent: int = 0


@dataclass(frozen=True)
class BatchResult:
    """One reconciled batch: its counts and the frames to remediate and report."""

    reconciliation: Reconciliation
    companies: int
    gone_at_codat: int
    pulls_read: int
    #: stored this run (0 in a dry run): findings new and resolved, deletion items opened
    new: int = 0
    resolved: int = 0
    deletion_items_opened: int = 0

    @property
    def needs_remediation(self) -> bool:
        return not self.reconciliation.sync_settings.empty or not self.reconciliation.queue.empty

    def report(self, rows: int) -> BatchReport:
        """What the run keeps of the batch once it is remediated: counts, findings by (kind, company), the
        companies whose sync settings change and at most `rows` pulls to queue (not the batch's frames)."""
        findings = self.reconciliation.findings
        queue = self.reconciliation.queue
        return BatchReport(
            companies=self.companies,
            gone_at_codat=self.gone_at_codat,
            pulls_read=self.pulls_read,
            new=self.new,
            resolved=self.resolved,
            deletion_items_opened=self.deletion_items_opened,
            by_kind={str(k): int(v) for k, v in findings["kind"].value_counts().items()},
            findings_by_company=findings.groupby(["kind", "company_id"]).size().rename("findings").reset_index(),
            settings_companies=sorted(set(self.reconciliation.sync_settings["company_id"])),
            queued=len(queue),
            queue_rows=queue.head(rows).to_dict("records"),
        )


@dataclass(frozen=True)
class BatchReport:
    companies: int
    gone_at_codat: int
    pulls_read: int
    new: int
    resolved: int
    deletion_items_opened: int
    by_kind: dict[str, int]
    findings_by_company: pd.DataFrame
    settings_companies: list[str]
    queued: int
    queue_rows: list[dict[str, Any]]


@dataclass(frozen=True)
class Remediation:
    """What was changed at Codat for a batch."""

    sync_settings_set: int = 0
    pulls_queued: int = 0
    #: requests sent to Codat (retries included), in all and by company id
    codat_requests: int = 0
    requests: dict[str, int] = field(default_factory=dict)


def requests_by_reason(
    requests: Sequence[dict[str, int]], reason_of: dict[str, str], default: str
) -> dict[str, int]:
    """Codat requests summed by the reason each company was read for (`default` for a company without one)."""
    totals: dict[str, int] = {}
    for by_company in requests:
        for company, count in by_company.items():
            reason = reason_of.get(company, default)
            totals[reason] = totals.get(reason, 0) + count
    return totals


@dataclass(frozen=True)
class ReconciliationSummary:
    as_of: str
    window_start: str | None
    window_end: str | None
    dry_run: bool
    companies: int
    gone_at_codat: int
    pulls_read: int
    new: int
    resolved: int
    deletion_items_opened: int
    #: findings by kind, every kind listed
    findings: dict[str, int] = field(default_factory=dict)
    sync_settings_to_set: int = 0
    pulls_to_queue: int = 0
    sync_settings_set: int = 0
    pulls_queued: int = 0
    #: how the companies were chosen: "incremental", "full", "named" (company_ids) or "window" (a backfill)
    selection: str = "named"
    #: companies read, by the reason each was chosen for (one reason per company)
    reasons: dict[str, int] = field(default_factory=dict)
    #: companies selected but left for a later night by the request budget (lowest priorities first)
    deferred: int = 0
    #: the selection's requests at the cap, in minutes (0 without a cap)
    estimated_minutes: float = 0.0
    #: requests sent to Codat (retries included), in all and by the reason of the company they were for
    codat_requests: int = 0
    codat_requests_by_reason: dict[str, int] = field(default_factory=dict)

    @classmethod
    def combine(
        cls,
        reports: Sequence[BatchReport],
        remediations: Sequence[Remediation],
        *,
        now: datetime,
        window_start: datetime | None,
        window_end: datetime | None,
        dry_run: bool,
        **selection: Any,
    ) -> ReconciliationSummary:
        """Sum the batches; `selection` holds the run's selection, reasons, deferred, estimated_minutes,
        codat_requests and codat_requests_by_reason."""
        return cls(
            as_of=iso(now),  # type: ignore[arg-type]
            window_start=iso(window_start),
            window_end=iso(window_end),
            dry_run=dry_run,
            companies=sum(r.companies for r in reports),
            gone_at_codat=sum(r.gone_at_codat for r in reports),
            pulls_read=sum(r.pulls_read for r in reports),
            new=sum(r.new for r in reports),
            resolved=sum(r.resolved for r in reports),
            deletion_items_opened=sum(r.deletion_items_opened for r in reports),
            findings={kind: sum(r.by_kind.get(kind, 0) for r in reports) for kind in FINDING_KINDS},
            sync_settings_to_set=sum(len(r.settings_companies) for r in reports),
            pulls_to_queue=sum(r.queued for r in reports),
            sync_settings_set=sum(r.sync_settings_set for r in remediations),
            pulls_queued=sum(r.pulls_queued for r in remediations),
            **selection,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def message(self) -> str:
        """The run's final state message: findings by kind, most serious first, and what was changed."""
        found = ", ".join(f"{self.findings[k]} {k}" for k in SEVERITY if self.findings.get(k)) or "no findings"
        text = f"{self.companies} companies checked: {found}"
        if self.dry_run:
            return f"Dry run: {text}; nothing changed"
        return (text + f"; sync settings set {self.sync_settings_set}, pulls queued {self.pulls_queued}, "
                f"deletion items opened {self.deletion_items_opened}")


#: finding kinds, most serious first: data taken without consent before what is set to be taken, before a
#: product reading outside its consent, before what is merely missing
SEVERITY = (
    "unconsented_pull", "unconsented_sync_setting", "pull_on_expired_connection", "product_read_outside_consent",
    "missing_pull",
)
FINDING_COLUMNS = ["kind", "findings", "company", "company_id"]


def findings_table(parts: Sequence[pd.DataFrame], names: dict[str, str], limit: int) -> tuple[list[dict[str, Any]], int]:
    """The operator's findings (kind, findings, company, company_id): most serious kind first, then the
    companies with most findings; the first `limit` rows, and how many there are in all."""
    parts = [p for p in parts if not p.empty]
    if not parts:
        return [], 0
    table = pd.concat(parts, ignore_index=True)
    rank = {kind: i for i, kind in enumerate(SEVERITY)}
    table = table.assign(rank=table["kind"].map(rank).fillna(len(SEVERITY)), company=table["company_id"].map(names))
    table = table.sort_values(["rank", "findings", "company_id"], ascending=[True, False, True], kind="stable")
    head = table.head(limit)[FINDING_COLUMNS].assign(company=lambda t: t["company"].fillna(""))
    return [{**row, "findings": int(row["findings"])} for row in head.to_dict("records")], len(table)
