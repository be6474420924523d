"""Consent reconciliation: one company batch's observed state in, findings and remediations out (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from consent_lifecycle.catalog import Catalog
from consent_lifecycle.datatypes import COMPLETE
from consent_lifecycle.expiry import INPUT_COLUMNS, classify
from consent_lifecycle.reconcile.diff import (
    FINDING_COLUMNS,
    consented_pulls,
    desired_sync_settings,
    expired_since,
    missing_pulls,
    pulls_on_expired_connections,
    reads_outside_consent,
    unconsented_pulls,
    unconsented_sync_settings,
)
from consent_lifecycle.reconcile.intervals import entitlement_intervals, entitlements_at

__all__ = ["FINDING_COLUMNS", "Observed", "Reconciliation", "reconcile"]


@dataclass(frozen=True)
class Observed:
    """What one batch of companies looks like: Codat's side and ours.

    settings: SETTING_COLUMNS (company sync settings at Codat); pulls: PULL_COLUMNS (every pull seen so far);
    reads: READ_COLUMNS (product access records in the window); events: the companies' ledger events
    (`events_frame`); connections: the snapshot (expiry INPUT_COLUMNS + status_changed_at, deleted_at).
    """

    company_ids: list[str]
    settings: pd.DataFrame
    pulls: pd.DataFrame
    reads: pd.DataFrame
    events: pd.DataFrame
    connections: pd.DataFrame


@dataclass(frozen=True)
class Reconciliation:
    findings: pd.DataFrame
    #: companies whose sync settings change, with their new settings (SETTING_COLUMNS; a company with no
    #: row but its id has no entitled type left)
    sync_settings: pd.DataFrame
    #: (company_id, connection_id, data_type) to queue a pull for
    queue: pd.DataFrame
    #: (company_id, connection_id, data_type, pull_id, requested) data pulled without consent: to delete
    deletions: pd.DataFrame
    #: the kinds checked (state kinds only when the window reaches `now`)
    kinds: tuple[str, ...]


def reconcile(
    observed: Observed,
    catalog: Catalog,
    now: datetime,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
) -> Reconciliation:
    """Findings for pulls and reads in [window_start, window_end) against consent as of each one's time,
    and, when the window reaches `now`, the present: sync settings and missing pulls against entitlements."""
    now_ts = pd.Timestamp(now)
    start = pd.Timestamp(window_start) if window_start is not None else None
    end = pd.Timestamp(window_end) if window_end is not None else now_ts
    present = end >= now_ts

    intervals = entitlement_intervals(observed.events, observed.connections)
    classified = classify(observed.connections[INPUT_COLUMNS], catalog, now).merge(
        observed.connections[["id", "status_changed_at"]], on="id"
    )
    # one check for every pull seen: the window's pulls are judged by it, and only consented pulls count as a
    # type's last pull (data pulled while nothing covered it cannot be used; it is due for deletion)
    consented = consented_pulls(observed.pulls, intervals)
    in_window = _between(observed.pulls, "requested", start, end)
    reads = _between(observed.reads, "at", start, end)
    unconsented = unconsented_pulls(in_window, intervals, consented[in_window.index])
    found = [
        unconsented,
        pulls_on_expired_connections(in_window, expired_since(classified)),
        reads_outside_consent(reads, intervals),
    ]
    kinds = ["unconsented_pull", "pull_on_expired_connection", "product_read_outside_consent"]
    settings = pd.DataFrame(columns=["company_id"])
    queue = pd.DataFrame(columns=["company_id", "connection_id", "data_type"])
    if present:
        # what replay(events, now) would entitle, read off the intervals already computed
        entitled = entitlements_at(intervals, observed.connections, catalog, now)
        missing = missing_pulls(entitled, observed.pulls[consented], catalog, now)
        found += [unconsented_sync_settings(observed.settings, entitled, now), missing]
        kinds += ["unconsented_sync_setting", "missing_pull"]
        settings = desired_sync_settings(observed.settings, entitled, catalog)
        queue = missing[["company_id", "connection_id", "data_type"]]
    pulled = in_window[~consented[in_window.index] & (in_window["status"] == COMPLETE)]
    deletions = pulled.rename(columns={"id": "pull_id"})[
        ["company_id", "connection_id", "data_type", "pull_id", "requested"]
    ]
    findings = (
        pd.concat([f for f in found if not f.empty], ignore_index=True)
        if any(not f.empty for f in found)
        else pd.DataFrame(columns=FINDING_COLUMNS)
    )
    return Reconciliation(findings, settings, queue.reset_index(drop=True), deletions, tuple(kinds))


def _between(frame: pd.DataFrame, column: str, start: pd.Timestamp | None, end: pd.Timestamp) -> pd.DataFrame:
    keep = frame[column] < end
    if start is not None:
        keep &= frame[column] >= start
    return frame[keep]
