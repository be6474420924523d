"""`consent run expiry-scan | reconcile | retention | codat-events` and `consent backfill reconcile`: the flows, run here
(ephemeral Prefect, or the server in PREFECT_API_URL), or as runs of a deployed flow."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from datetime import datetime
from typing import Annotated, Any

import typer

from consent_lifecycle.cli.common import (
    CODAT_EVENTS,
    EXPIRY_SCAN,
    RECONCILIATION,
    RETENTION,
    CompaniesOption,
    JsonOption,
    NowOption,
    codat_settings,
    command_group,
    company_ids,
    fail,
    iso_time,
    print_json,
    print_table,
    run_flow,
    within,
)
from consent_lifecycle.cli.reports import print_reconciliation, print_scan
from consent_lifecycle.clock import day_slices, iso, utcnow

#: the deployed consent-reconciliation flow that `backfill reconcile --via-deployment` creates runs of
DEPLOYMENT = "consent-reconciliation/consent-reconciliation"

app = command_group("Run a flow here (ephemeral Prefect, or the server in PREFECT_API_URL).")
backfill_app = command_group("Run a flow over a past window.")

DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Check and report; change nothing.")]


@app.command("expiry-scan")
def run_expiry_scan(
    company: CompaniesOption = None,
    now: NowOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and report; write and send nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Flow connection-expiry-scan: classify connections, warn ahead of expiry, send re-consent links."""
    scope = company_ids(company)
    at = iso_time(now)
    print_scan(run_flow(EXPIRY_SCAN, company_ids=scope, now=at, dry_run=dry_run), as_json)


def _at_least_one(value: str) -> int:
    """Parser (`parser=`) of a whole number >= 1, or exit 2 naming the value."""
    try:
        number = int(value)
    except ValueError:
        raise typer.BadParameter(f"not a whole number: {value!r}") from None
    return within(1)(number)  # type: ignore[return-value]


@app.command("reconcile")
def run_reconcile(
    company: CompaniesOption = None,
    now: NowOption = None,
    dry_run: DryRunOption = False,
    full: Annotated[
        bool, typer.Option("--full", help="Read every company (a first install, or on demand), not tonight's selection.")
    ] = False,
    sweep_days: Annotated[
        int,
        typer.Option(
            "--sweep-days", parser=_at_least_one, metavar="N",
            help="Every company is read at least once in this many nights.",
        ),
    ] = 7,
    budget_minutes: Annotated[
        int,
        typer.Option(
            "--budget-minutes", parser=_at_least_one, metavar="MINUTES",
            help="Read what the request cap allows in this many minutes; defer the rest (lowest priorities first).",
        ),
    ] = 60,
    as_json: JsonOption = False,
) -> None:
    """Flow consent-reconciliation: sync settings, pulls and reads against consent; fix the difference.
    Without --company: the companies that changed or are due (incremental), or every company with --full."""
    if full and company:
        raise fail("--full reads every company: leave out --company, or --full")
    scope = company_ids(company)
    at = iso_time(now)
    summary = run_flow(
        RECONCILIATION, company_ids=scope, now=at, dry_run=dry_run, full=full, sweep_days=sweep_days,
        budget_minutes=budget_minutes,
    )
    print_reconciliation(summary, as_json)


@app.command("retention")
def run_retention(
    company: CompaniesOption = None,
    now: NowOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan and report; delete nothing (the default).")
    ] = False,
    execute: Annotated[
        bool,
        typer.Option("--execute", help="Delete what is due (default: a dry run that plans and reports)."),
    ] = False,
    max_deletions: Annotated[
        int, typer.Option("--max-deletions", callback=within(0), help="Stop, deleting nothing, above this.")
    ] = 1000,
    as_json: JsonOption = False,
) -> None:
    """Flow retention-enforcement: plan deletions, and with --execute delete what is due, with receipts."""
    from consent_lifecycle.retention.summary import RetentionSummary

    if dry_run and execute:
        raise fail("--dry-run and --execute contradict each other: pass --execute to delete, or neither to plan")
    scope = company_ids(company)
    at = iso_time(now)
    state = run_flow(
        RETENTION, needs_codat=execute, company_ids=scope, now=at, dry_run=not execute,
        max_deletions=max_deletions, return_state=True,
    )
    summary = state.result(raise_on_failure=False)
    if not isinstance(summary, RetentionSummary):
        raise fail(f"retention-enforcement failed: {summary}", code=1)
    if as_json:
        print_json({"state": state.name, "message": state.message, **summary.as_dict()})
    else:
        typer.echo(f"retention as of {summary.as_of}: {state.name} ({state.message})")
        print_table([{"": k, "items": v} for k, v in summary.counts().items()], ["", "items"])
    if state.is_failed():
        raise typer.Exit(1)


@app.command("codat-events")
def run_codat_events(now: NowOption = None, as_json: JsonOption = False) -> None:
    """Flow codat-events: drain the inbox of Codat webhook events once; reconcile violating companies at once."""
    summary = run_flow(CODAT_EVENTS, now=iso_time(now))
    if as_json:
        print_json(summary.as_dict())
        return
    typer.echo(f"codat events as of {summary.as_of}: {summary.events} processed in {summary.batches} batches")
    rows = [{"event type": k, "processed": v} for k, v in summary.processed.items()]
    print_table(rows, ["event type", "processed"])
    typer.echo(
        f"violations: {summary.violations}; reconciled at once: {len(summary.reconciled_at_once)}; "
        f"marked: {summary.marked}; retried: {summary.retried}; failed: {summary.failed}; "
        f"Codat requests: {summary.codat_requests}"
    )


@backfill_app.command("reconcile")
def backfill_reconcile(
    start: Annotated[str, typer.Option("--start", help="Window start, ISO 8601.", show_default=False)],
    end: Annotated[str, typer.Option("--end", help="Window end, ISO 8601 (exclusive).", show_default=False)],
    company: CompaniesOption = None,
    dry_run: DryRunOption = False,
    via_deployment: Annotated[
        bool,
        typer.Option("--via-deployment", help=f"Create one run per slice of the deployment {DEPLOYMENT}."),
    ] = False,
    slice_days: Annotated[
        int,
        typer.Option("--slice-days", callback=within(1, 366), help="Days per slice (one flow run each)."),
    ] = 1,
    as_json: JsonOption = False,
) -> None:
    """Check pulls and reads in [start, end) against consent as it stood at each, one slice at a time."""
    scope = company_ids(company)
    window_start, window_end = iso_time(start), iso_time(end)
    assert window_start is not None and window_end is not None
    if window_start >= window_end:
        raise fail(f"--start {start} is not before --end {end}")
    try:
        slices = day_slices(window_start, window_end, slice_days)
    except OverflowError:  # a window running past year 9999 cannot be cut into days
        raise fail(f"--start {start} .. --end {end} cannot be cut into {slice_days}-day slices") from None
    if via_deployment:
        rows = asyncio.run(_create_slice_runs(slices, scope, dry_run))
    else:
        codat_settings()  # no API key: refused before the progress bar
        rows = []
        with typer.progressbar(slices, label="reconciling", file=sys.stderr) as bar:
            for slice_start, slice_end in bar:
                summary = run_flow(
                    RECONCILIATION, company_ids=scope, window_start=slice_start, window_end=slice_end,
                    now=utcnow(), dry_run=dry_run,
                )
                rows.append(
                    {"window_start": iso(slice_start), "window_end": iso(slice_end), "new": summary.new,
                     **summary.findings}
                )
    if as_json:
        print_json(rows)
        return
    print_table(rows, list(rows[0]) if rows else ["window_start", "window_end"])


async def _create_slice_runs(
    slices: list[tuple[datetime, datetime]], scope: list[str] | None, dry_run: bool
) -> list[dict[str, Any]]:
    """One flow run per slice of the deployed flow; the idempotency key makes a rerun create none."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    digest = hashlib.sha256(",".join(sorted(scope or [])).encode()).hexdigest()[:12]
    rows = []
    for slice_start, slice_end in slices:
        key = f"backfill-reconcile:{iso(slice_start)}:{iso(slice_end)}:{digest}:{'dry' if dry_run else 'fix'}"
        parameters = {"company_ids": scope, "window_start": slice_start, "window_end": slice_end, "dry_run": dry_run}
        try:
            run = await run_deployment(
                DEPLOYMENT, parameters=parameters, idempotency_key=key, timeout=0, as_subflow=False,
                tags=["backfill"],
            )
        except ObjectNotFound:
            raise fail(f"deployment {DEPLOYMENT!r} not found: run `prefect deploy --all` (see README)") from None
        rows.append(
            {"window_start": iso(slice_start), "window_end": iso(slice_end), "flow_run_id": str(run.id),
             "flow_run_name": run.name}
        )
    return rows
