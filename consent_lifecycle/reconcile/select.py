"""Which companies tonight's reconciliation reads from Codat, and why (issue 16: a night costs what changed).

`select_companies` is a pure function over the frames `store.selection_inputs` loads: each active company
gets at most ONE reason, the first that applies in `REASONS` order (highest priority first):

- `full`: `full=True` (first install, on demand): every active company;
- the reconcile_marks reasons (`violation`, `failed_pull`, `connection_change`, `company_change`,
  `processing_failed`: what events said needs Codat read again);
- `consent_changed`: a ledger event recorded after the company's last reconciliation;
- `lost_webhook`: a connection's `lastSync` (from the snapshot the expiry scan keeps) later than both its
  last `read.completed` (`last_read_at`) and the company's last reconciliation, by more than `GRACE`; or
  the company's own `lastSync` later than its connections' latest read event and its last reconciliation;
- `in_flight`: pulls not finished when last read (no `completed`): their outcome is still to be seen;
- `never_reconciled`: no cursor;
- `overdue`: the last reconciliation is older than `sweep_days`;
- `sweep`: a stable hash of the company id picks this day's slice (UTC days), so every company is read
  at least once in any `sweep_days` consecutive days even when nothing above flags it (sync settings
  edited in the Portal send no event); a company of the slice already reconciled that day is not read
  again by a later run of the same day.

`within_budget` then keeps the highest-priority companies that fit a run's request budget and defers the
rest (sweep and overdue first): a deferred company keeps its cursor, so it comes back as overdue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from consent_lifecycle.reconcile.marks import REASONS as MARK_REASONS

#: every reason, highest priority first
REASONS = (
    "full",
    *MARK_REASONS,
    "consent_changed",
    "lost_webhook",
    "in_flight",
    "never_reconciled",
    "overdue",
    "sweep",
)
#: a `lastSync` this much later than the last read event is a lost webhook (events arrive within seconds;
#: Codat retries the first delivery immediately and then after 5 s and 5 min)
GRACE = timedelta(minutes=15)
#: Codat requests to reconcile one company: its sync settings and (one page of) its pull history
REQUESTS_PER_COMPANY = 2
#: fixed key of the sweep hash: a company's slice never changes between runs, processes or machines
_HASH_KEY = "consent-sweep-01"


@dataclass(frozen=True)
class SelectionInputs:
    """What the selection reads, one frame each (times are UTC timestamps):
    companies [company_id, last_sync_at] (active ones; last_sync_at optional); cursors [company_id, reconciled_at]; marks [company_id, reasons]
    (a list of mark reasons); consent_changes [company_id, recorded_at] (the latest ledger event);
    connections [company_id, last_sync_at, last_read_at] (live ones); in_flight [company_id]."""

    companies: pd.DataFrame
    cursors: pd.DataFrame
    marks: pd.DataFrame
    consent_changes: pd.DataFrame
    connections: pd.DataFrame
    in_flight: pd.DataFrame


@dataclass(frozen=True)
class Selection:
    """The companies to read, with one reason each, highest priority first (then by id); `deferred`:
    companies selected but left for a later night by the budget."""

    chosen: pd.DataFrame  # [company_id, reason]
    deferred: int = 0
    estimated_minutes: float = 0.0

    @property
    def company_ids(self) -> list[str]:
        return self.chosen["company_id"].tolist()

    @property
    def reasons(self) -> dict[str, int]:
        counts = self.chosen["reason"].value_counts()
        return {reason: int(counts[reason]) for reason in REASONS if reason in counts.index}

    def reason_of(self) -> dict[str, str]:
        return dict(zip(self.chosen["company_id"], self.chosen["reason"], strict=True))


def sweep_slice(company_ids: pd.Series, now: datetime, sweep_days: int) -> np.ndarray:
    """True for the companies of `now`'s sweep slice: hash(id) % sweep_days == day number % sweep_days, so
    over any `sweep_days` consecutive days each company falls in exactly one slice."""
    if sweep_days < 1:
        raise ValueError(f"sweep_days must be at least 1, got {sweep_days}")
    hashes = pd.util.hash_pandas_object(company_ids.astype(str), index=False, hash_key=_HASH_KEY).to_numpy()
    day = (now.date() - datetime(1970, 1, 1).date()).days
    return (hashes % np.uint64(sweep_days)) == np.uint64(day % sweep_days)


def select_companies(inputs: SelectionInputs, now: datetime, sweep_days: int, full: bool) -> Selection:
    """Tonight's companies and the reason of each (see the module docstring)."""
    if sweep_days < 1:
        raise ValueError(f"sweep_days must be at least 1, got {sweep_days}")
    ids = pd.Series(sorted(set(inputs.companies["company_id"])), dtype=object, name="company_id")
    reason = pd.Series(pd.NA, index=ids, dtype=object)
    if full:
        reason[:] = "full"
        return _selection(reason)
    now_ts = pd.Timestamp(now)
    reconciled = inputs.cursors.set_index("company_id")["reconciled_at"].reindex(ids)
    reconciled = pd.to_datetime(reconciled, utc=True)

    def assign(mask: pd.Series | np.ndarray, name: str) -> None:
        mask = np.asarray(mask, dtype=bool) & reason.isna().to_numpy()
        reason[mask] = name

    marks = inputs.marks.explode("reasons").dropna(subset=["reasons"])
    for name in MARK_REASONS:
        assign(ids.isin(marks.loc[marks["reasons"] == name, "company_id"]).to_numpy(), name)

    changed = pd.to_datetime(
        inputs.consent_changes.groupby("company_id")["recorded_at"].max().reindex(ids), utc=True
    )
    assign((changed > reconciled).to_numpy(), "consent_changed")

    # each connection's lastSync against its last read event; the company's against its latest read event
    last_reads = inputs.connections.groupby("company_id")["last_read_at"].max()
    companies = inputs.companies.reindex(columns=["company_id", "last_sync_at"]).dropna(subset=["last_sync_at"])
    companies = companies.assign(last_read_at=companies["company_id"].map(last_reads))
    connections = pd.concat(
        [inputs.connections[["company_id", "last_sync_at", "last_read_at"]], companies], ignore_index=True
    )
    read = pd.to_datetime(connections["last_read_at"], utc=True)
    since = pd.to_datetime(connections["company_id"].map(reconciled), utc=True)
    seen = read.where(read.notna() & ~(since > read), since)  # the later of the two (NaT: neither)
    last_sync = pd.to_datetime(connections["last_sync_at"], utc=True)
    lost = connections.loc[(last_sync > seen + GRACE).to_numpy(), "company_id"]  # NaT compares False
    assign(ids.isin(lost).to_numpy(), "lost_webhook")

    assign(ids.isin(inputs.in_flight["company_id"]).to_numpy(), "in_flight")
    assign(reconciled.isna().to_numpy(), "never_reconciled")
    assign((reconciled < now_ts - timedelta(days=sweep_days)).to_numpy(), "overdue")
    # a run more often than nightly (the deployment runs hourly) sweeps the day's slice once
    day_start = now_ts.normalize()
    assign(sweep_slice(ids, now, sweep_days) & ~(reconciled >= day_start).to_numpy(), "sweep")
    return _selection(reason)


def within_budget(
    selection: Selection, max_requests_per_minute: int, budget_minutes: float,
    requests_per_company: int = REQUESTS_PER_COMPANY,
) -> Selection:
    """Keep the highest-priority companies whose estimated requests fit `budget_minutes` at the cap, defer
    the rest (lowest priority first: sweep, overdue, ...). No cap (0) keeps everything."""
    selected = len(selection.chosen)
    if max_requests_per_minute <= 0:
        return Selection(selection.chosen, selection.deferred, 0.0)
    estimated = selected * requests_per_company / max_requests_per_minute
    if estimated <= budget_minutes:
        return Selection(selection.chosen, selection.deferred, round(estimated, 2))
    fits = max(0, math.floor(budget_minutes * max_requests_per_minute / requests_per_company))
    return Selection(
        selection.chosen.head(fits).reset_index(drop=True), selection.deferred + selected - fits, round(estimated, 2)
    )


def _selection(reason: pd.Series) -> Selection:
    chosen = reason.dropna().rename("reason").rename_axis("company_id").reset_index()
    rank = chosen["reason"].map({name: i for i, name in enumerate(REASONS)})
    chosen = chosen.assign(rank=rank).sort_values(["rank", "company_id"], kind="stable")
    return Selection(chosen[["company_id", "reason"]].reset_index(drop=True))
