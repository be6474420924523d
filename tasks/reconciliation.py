"""consent-reconciliation's I/O steps: read Codat's side of a batch, reconcile it in the database, remediate."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.clock import iso
from consent_lifecycle.codat import CodatClient, CodatError
from consent_lifecycle.codat.models import SyncSetting
from consent_lifecycle.reconcile import marks, reconcile, store
from consent_lifecycle.reconcile.check import Reconciliation
from consent_lifecycle.reconcile.diff import PULL_COLUMNS, SETTING_COLUMNS
from consent_lifecycle.reconcile.select import Selection, select_companies, within_budget
from consent_lifecycle.reconcile.summary import BatchResult, CodatState, Remediation
from tasks.resources import codat_client, engine, settings

#: pulls are re-read from this long before the cursor, so one still running at the last read is seen finished
OVERLAP = timedelta(days=1)


@task(cache_policy=NO_CACHE)
def list_companies(company_ids: list[str] | None) -> list[str]:
    """The companies to reconcile: those named, or every company in the snapshot not deleted at Codat."""
    if company_ids:
        return sorted(set(company_ids))
    with engine().connect() as db:
        return store.active_company_ids(db)


@task(cache_policy=NO_CACHE)
def select_for_tonight(now: datetime, sweep_days: int, full: bool, budget_minutes: float) -> Selection:
    """The companies tonight's incremental (or `full`) reconciliation reads, each with its reason, cut to
    what the request cap lets it read in `budget_minutes` (see consent_lifecycle.reconcile.select)."""
    with engine().connect() as db:
        inputs = store.selection_inputs(db)
    selection = select_companies(inputs, now, sweep_days, full)
    return within_budget(selection, settings().codat_max_requests_per_minute, budget_minutes)


def _batch_name() -> str:
    ids = task_run.parameters["company_ids"]
    return f"{task_run.task_name}-{len(ids)}-from-{ids[0][:8]}" if ids else task_run.task_name


@task(cache_policy=NO_CACHE, task_run_name=_batch_name)
async def fetch_codat_state(
    company_ids: list[str], window_start: datetime | None, window_end: datetime | None
) -> CodatState:
    """Sync settings and pull history (from the window's start, else from each company's cursor) of a batch,
    concurrently within the client's bound; companies Codat no longer has are returned apart, and the
    requests it took (retries included) by company."""
    with engine().connect() as db:
        since = {} if window_start is not None else store.cursors(db, company_ids)
    async with codat_client() as codat:
        results = await asyncio.gather(
            *(_company_state(codat, c, window_start or _minus(since.get(c)), window_end) for c in company_ids)
        )
    settings_rows = [row for found, rows, _ in results if found for row in rows]
    pull_rows = [row for found, _, rows in results if found for row in rows]
    gone = [c for c, (found, _, _) in zip(company_ids, results, strict=True) if not found]
    pulls = pd.DataFrame.from_records(pull_rows, columns=PULL_COLUMNS)
    for column in ("requested", "completed"):
        pulls[column] = pd.to_datetime(pulls[column], utc=True)
    return CodatState(
        pd.DataFrame.from_records(settings_rows, columns=SETTING_COLUMNS), pulls, gone,
        requests=dict(codat.requests_by_company), requests_sent=codat.requests_sent,
    )


async def _company_state(
    codat: CodatClient, company_id: str, start: datetime | None, end: datetime | None
) -> tuple[bool, list[dict[str, Any]], list[dict[str, Any]]]:
    clauses = [f"requested>={iso(start)}"] if start else []
    clauses += [f"requested<{iso(end)}"] if end else []
    try:
        sync, pulls = await asyncio.gather(
            codat.get_sync_settings(company_id),
            codat.list_pull_operations(company_id, query="&&".join(clauses) or None),
        )
    except CodatError as exc:
        if exc.status_code == 404:
            return False, [], []
        raise
    settings_rows = [
        {
            "company_id": company_id,
            "data_type": s.data_type,
            "fetch_on_first_link": s.fetch_on_first_link,
            "sync_schedule": s.sync_schedule,
            "sync_order": s.sync_order,
        }
        for s in sync.settings
    ]
    pull_rows = [
        {
            "id": p.id,
            "company_id": company_id,
            "connection_id": p.connection_id,
            "data_type": p.data_type,
            "status": p.status,
            "requested": p.requested,
            "completed": p.completed,
        }
        for p in pulls
    ]
    return True, settings_rows, pull_rows


@task(cache_policy=NO_CACHE, task_run_name=_batch_name)
def reconcile_batch(
    company_ids: list[str],
    codat_state: CodatState,
    now: datetime,
    window_start: datetime | None,
    window_end: datetime | None,
    dry_run: bool,
) -> BatchResult:
    """Diff one batch against consent in one transaction: findings stored, deletion items opened, pulls and
    cursors recorded and the batch's reconcile marks cleared (unless `dry_run`, or a past window); returns the
    counts and what to remediate at Codat."""
    sync_settings, pulls, gone = codat_state.settings, codat_state.pulls, codat_state.gone
    checked = [c for c in company_ids if c not in set(gone)]
    stored: dict[str, int] = {}
    with engine().begin() as db:
        observed = store.load_observed(db, checked, sync_settings, pulls)
        result = reconcile(observed, load_catalog(settings().catalog), now, window_start, window_end)
        if not dry_run:
            store.store_pulls(db, pulls, now)
            written = store.store_findings(db, result.findings, checked, result.kinds, now, refetched=set(pulls["id"]))
            stored = {"new": written["new"], "resolved": written["resolved"]}
            stored["deletion_items_opened"] = store.open_deletions(db, result.deletions, now)
            if window_start is None and window_end is None:
                store.advance_cursors(db, checked, now, now)
                marks.clear(db, company_ids, now)  # a company gone at Codat too: nothing left to read
                # cleared by `remediate` once done: a crash before that is finished by the next run
                marks.mark(db, [(c, "remediation_pending") for c in _to_remediate(result)], now)
    return BatchResult(result, companies=len(checked), gone_at_codat=len(gone), pulls_read=len(pulls), **stored)


@task(cache_policy=NO_CACHE, task_run_name=_batch_name)
async def remediate(
    company_ids: list[str], sync_settings: pd.DataFrame, queue: pd.DataFrame, now: datetime
) -> Remediation:
    """Set each listed company's sync settings to exactly its entitled types, and queue each missing pull
    (a pull Codat says is already in progress counts as queued: one in flight per connection and type);
    once all is done, resolve the findings that made untrue (`store.resolve_remediated`),
    and clear the `remediation_pending` marks `reconcile_batch` left."""
    # each company's rows in their order, by company id (one sort and one pass, not a frame per company)
    rows = sync_settings.sort_values("company_id", kind="stable").to_dict("records")
    by_company = [(c, list(group)) for c, group in groupby(rows, key=itemgetter("company_id"))]
    async with codat_client() as codat:
        settings_done = await asyncio.gather(*(_set_settings(codat, c, group) for c, group in by_company))
        queued = await asyncio.gather(
            *(
                codat.queue_pull_once(row["company_id"], row["data_type"], connection_id=row["connection_id"])
                for row in queue.to_dict("records")
            )
        )
    set_at_codat = [c for c, _ in by_company]
    with engine().begin() as db:
        store.resolve_remediated(db, set_at_codat, queue, now)  # queued now, or already in flight
        # a queued pull that then fails is told by its read.completed (a failed_pull mark), or its lost
        # webhook by the listing's lastSync: no need to read the company again to see it land
        marks.unmark(db, sorted(set(set_at_codat) | set(queue["company_id"])), "remediation_pending", now)
    return Remediation(
        sync_settings_set=sum(settings_done), pulls_queued=sum(queued), codat_requests=codat.requests_sent,
        requests=dict(codat.requests_by_company),
    )


async def _set_settings(codat: CodatClient, company_id: str, rows: list[dict[str, Any]]) -> int:
    settings_list = [
        SyncSetting(
            data_type=r["data_type"],
            fetch_on_first_link=True,
            sync_schedule=int(r["sync_schedule"]),
            sync_order=int(r["sync_order"]),
        )
        for r in rows
        if not pd.isna(r["data_type"])  # a company with no entitled type left has one row, without a type
    ]
    await codat.set_sync_settings(company_id, settings_list, overrides_defaults=True)
    return 1


def _to_remediate(plan: Reconciliation) -> list[str]:
    return sorted(set(plan.sync_settings["company_id"]) | set(plan.queue["company_id"]))


def _minus(moment: datetime | None) -> datetime | None:
    return moment - OVERLAP if moment is not None else None
