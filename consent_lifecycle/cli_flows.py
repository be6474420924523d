"""The flow commands: `consent run reconcile|retention`, `backfill reconcile`, `findings`, `access`, `deletions`.

Registered on the `consent` app by `consent_lifecycle.cli`; shares its argument parsers and printers.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from consent_lifecycle.cli import (
    CompanyFilterOption,
    JsonOption,
    NowOption,
    _company_ids,
    _data_type,
    _fail,
    _iso_time,
    _load_catalog,
    _optional_company_id,
    _optional_connection_id,
    _print_json,
    _print_table,
    _product_key,
    _settings,
    _within,
    app,
    run_app,
)
from consent_lifecycle.clock import day_slices, iso, utcnow
from consent_lifecycle.settings import Settings

if TYPE_CHECKING:
    from consent_lifecycle.reconcile.summary import ReconciliationSummary

DEPLOYMENT = "consent-reconciliation/consent-reconciliation"
CompanyOption = Annotated[
    list[str] | None, typer.Option("--company", help="Only this company id (repeatable).", show_default=False)
]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Check and report; change nothing.")]

backfill_app = typer.Typer(rich_markup_mode=None, help="Run a flow over a past window.", no_args_is_help=True)
findings_app = typer.Typer(rich_markup_mode=None, help="Reconciliation findings.", no_args_is_help=True)
access_app = typer.Typer(rich_markup_mode=None, help="Product reads of customer data.", no_args_is_help=True)
app.add_typer(backfill_app, name="backfill")
app.add_typer(findings_app, name="findings")
app.add_typer(access_app, name="access")


@run_app.command("reconcile")
def run_reconcile(
    company: CompanyOption = None,
    now: NowOption = None,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
) -> None:
    """Flow consent-reconciliation: sync settings, pulls and reads against consent; fix the difference."""
    company_ids = _company_ids(company)
    at = _iso_time(now)
    summary = _reconcile(_codat_settings(), company_ids=company_ids, now=at, dry_run=dry_run)
    if as_json:
        _print_json(summary.as_dict())
        return
    _print_reconciliation(summary)


@backfill_app.command("reconcile")
def backfill_reconcile(
    start: Annotated[str, typer.Option("--start", help="Window start, ISO 8601.", show_default=False)],
    end: Annotated[str, typer.Option("--end", help="Window end, ISO 8601 (exclusive).", show_default=False)],
    company: CompanyOption = None,
    dry_run: DryRunOption = False,
    via_deployment: Annotated[
        bool,
        typer.Option("--via-deployment", help=f"Create one run per slice of the deployment {DEPLOYMENT}."),
    ] = False,
    slice_days: Annotated[
        int,
        typer.Option("--slice-days", callback=_within(1, 366), help="Days per slice (one flow run each)."),
    ] = 1,
    as_json: JsonOption = False,
) -> None:
    """Check pulls and reads in [start, end) against consent as it stood at each, one slice at a time."""
    company_ids = _company_ids(company)
    window_start, window_end = _iso_time(start), _iso_time(end)
    assert window_start is not None and window_end is not None
    if window_start >= window_end:
        raise _fail(f"--start {start} is not before --end {end}")
    try:
        slices = day_slices(window_start, window_end, slice_days)
    except OverflowError:  # a window running past year 9999 cannot be cut into days
        raise _fail(f"--start {start} .. --end {end} cannot be cut into {slice_days}-day slices") from None
    if via_deployment:
        rows = asyncio.run(_create_slice_runs(slices, company_ids, dry_run))
    else:
        settings = _codat_settings()
        rows = []
        with typer.progressbar(slices, label="reconciling", file=sys.stderr) as bar:
            for slice_start, slice_end in bar:
                summary = _reconcile(
                    settings,
                    company_ids=company_ids,
                    window_start=slice_start,
                    window_end=slice_end,
                    now=utcnow(),
                    dry_run=dry_run,
                )
                rows.append(
                    {
                        "window_start": iso(slice_start),
                        "window_end": iso(slice_end),
                        "new": summary.new,
                        **summary.findings,
                    }
                )
    if as_json:
        _print_json(rows)
        return
    _print_table(rows, list(rows[0]) if rows else ["window_start", "window_end"])


async def _create_slice_runs(
    slices: list[tuple[datetime, datetime]], company_ids: list[str] | None, dry_run: bool
) -> list[dict[str, Any]]:
    """One flow run per slice of the deployed flow; the idempotency key makes a rerun create none."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    scope = hashlib.sha256(",".join(sorted(company_ids or [])).encode()).hexdigest()[:12]
    rows = []
    for slice_start, slice_end in slices:
        key = f"backfill-reconcile:{iso(slice_start)}:{iso(slice_end)}:{scope}:{'dry' if dry_run else 'fix'}"
        parameters = {
            "company_ids": company_ids,
            "window_start": slice_start,
            "window_end": slice_end,
            "dry_run": dry_run,
        }
        try:
            run = await run_deployment(
                DEPLOYMENT,
                parameters=parameters,
                idempotency_key=key,
                timeout=0,
                as_subflow=False,
                tags=["backfill"],
            )
        except ObjectNotFound:
            raise _fail(
                f"deployment {DEPLOYMENT!r} not found: run `prefect deploy --all` (see README)"
            ) from None
        rows.append(
            {
                "window_start": iso(slice_start),
                "window_end": iso(slice_end),
                "flow_run_id": str(run.id),
                "flow_run_name": run.name,
            }
        )
    return rows


@findings_app.command("list")
def findings_list(
    kind: Annotated[str | None, typer.Option("--kind", metavar="K", help="Only this kind.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only findings not resolved.")] = False,
    company: CompanyFilterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Differences between consent and what was set to pull, pulled or read, oldest first."""
    from consent_lifecycle.db.engine import make_engine
    from consent_lifecycle.db.migrate import upgrade
    from consent_lifecycle.db.models import FINDING_KINDS
    from consent_lifecycle.reconcile.store import list_findings

    if kind is not None and kind not in FINDING_KINDS:
        raise _fail(f"unknown finding kind {kind!r}: expected one of {', '.join(FINDING_KINDS)}")
    settings = _settings()
    upgrade(settings.database_url)
    with make_engine(settings.database_url).connect() as db:
        rows = [_finding(r) for r in list_findings(db, kind=kind, open_only=open_only, company_id=company)]
    if as_json:
        _print_json(rows)
        return
    _print_table(
        rows,
        ["id", "kind", "company_id", "connection_id", "data_type", "product", "last_seen", "resolved_at"],
    )


def _finding(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "key": row["key"],
        "kind": row["kind"],
        "company_id": row["company_id"],
        "connection_id": row["connection_id"],
        "data_type": row["data_type"],
        "product": row["product"],
        "first_seen": iso(row["first_seen_at"]),
        "last_seen": iso(row["last_seen_at"]),
        "resolved_at": iso(row["resolved_at"]),
        "occurrences": row["occurrences"],
        "detail": row["detail"],
    }


ProductOption = Annotated[str, typer.Option("--product", help="The product that reads.", show_default=False)]
CompanyIdOption = Annotated[
    str, typer.Option("--company", callback=_optional_company_id, help="The company.", show_default=False)
]
DataTypeOption = Annotated[str, typer.Option("--data-type", callback=_data_type, help="Codat data type key.")]
ConnectionOption = Annotated[
    str | None, typer.Option("--connection", callback=_optional_connection_id, help="The connection read.")
]
AtOption = Annotated[
    str | None, typer.Option("--at", help="When, ISO 8601 (default: now).", show_default=False)
]


@access_app.command("record")
def access_record(
    product: ProductOption,
    company: CompanyIdOption,
    data_type: DataTypeOption,
    connection: ConnectionOption = None,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record that a product read a data type of a company (reconciliation checks it against consent)."""
    from consent_lifecycle.access import record_access

    catalog = _load_catalog(None)
    key = _product_key(catalog, product)
    moment, now = _iso_time(at) or utcnow(), utcnow()
    settings = _settings()
    record_id = record_access(
        _engine(settings), catalog, key, company, data_type, moment, now=now, connection_id=connection
    )
    body = {
        "id": record_id,
        "product": key,
        "company_id": company,
        "connection_id": connection,
        "data_type": data_type,
        "at": iso(moment),
    }
    _print_json(body) if as_json else typer.echo(
        f"recorded read {record_id}: {key} read {data_type} at {iso(moment)}"
    )


@access_app.command("check")
def access_check(
    product: ProductOption,
    company: CompanyIdOption,
    data_type: DataTypeOption,
    connection: ConnectionOption = None,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Whether the product's own consent covers the data type at that time (exit 0 yes, 1 no)."""
    from consent_lifecycle.access import is_permitted

    catalog = _load_catalog(None)
    key = _product_key(catalog, product)
    moment = _iso_time(at) or utcnow()
    permitted = is_permitted(
        _engine(_settings()), catalog, key, company, data_type, moment, connection_id=connection
    )
    body = {
        "product": key,
        "company_id": company,
        "data_type": data_type,
        "at": iso(moment),
        "permitted": permitted,
    }
    _print_json(body) if as_json else typer.echo("permitted" if permitted else "not permitted")
    raise typer.Exit(0 if permitted else 1)


def _engine(settings: Settings) -> Any:
    from consent_lifecycle.db.engine import make_engine
    from consent_lifecycle.db.migrate import upgrade

    upgrade(settings.database_url)
    return make_engine(settings.database_url)


def _codat_settings() -> Settings:
    settings = _settings()
    if settings.codat_api_key is None:
        raise _fail("CONSENT_CODAT_API_KEY is not set (see README: pointing at real Codat)")
    return settings


def _reconcile(settings: Settings, **parameters: Any) -> ReconciliationSummary:
    from consent_lifecycle.codat import CodatError
    from consent_lifecycle.db.migrate import upgrade
    from flows.consent_reconciliation import consent_reconciliation

    upgrade(settings.database_url)
    try:
        return asyncio.run(consent_reconciliation(**parameters))
    except CodatError as exc:
        raise _fail(str(exc), code=1) from None


def _print_reconciliation(summary: ReconciliationSummary) -> None:
    typer.echo(
        f"reconciliation as of {summary.as_of}{' (dry run)' if summary.dry_run else ''}: "
        f"{summary.companies} companies, {summary.pulls_read} pulls read, {summary.new} new findings, "
        f"{summary.resolved} resolved"
    )
    _print_table([{"finding": k, "count": v} for k, v in summary.findings.items()], ["finding", "count"])
    typer.echo(
        f"remediation: sync settings set for {summary.sync_settings_set} of {summary.sync_settings_to_set} "
        f"companies, {summary.pulls_queued} of {summary.pulls_to_queue} missing pulls queued, "
        f"{summary.deletion_items_opened} deletion items opened"
    )


# -- retention -------------------------------------------------------------------------------------

deletions_app = typer.Typer(
    rich_markup_mode=None, help="Deletion items and their receipts.", no_args_is_help=True
)
app.add_typer(deletions_app, name="deletions")


@run_app.command("retention")
def run_retention(
    company: CompanyOption = None,
    now: NowOption = None,
    execute: Annotated[
        bool,
        typer.Option("--execute", help="Delete what is due (default: a dry run that plans and reports)."),
    ] = False,
    max_deletions: Annotated[
        int, typer.Option("--max-deletions", callback=_within(0), help="Stop, deleting nothing, above this.")
    ] = 1000,
    as_json: JsonOption = False,
) -> None:
    """Flow retention-enforcement: plan deletions, and with --execute delete what is due, with receipts."""
    from consent_lifecycle.db.migrate import upgrade
    from consent_lifecycle.retention.summary import RetentionSummary

    company_ids = _company_ids(company)
    at = _iso_time(now)
    settings = _codat_settings() if execute else _settings()
    # imported once the settings are checked: importing a flow module reads them
    from flows.retention_enforcement import retention_enforcement

    upgrade(settings.database_url)
    state = asyncio.run(
        retention_enforcement(
            company_ids=company_ids,
            now=at,
            dry_run=not execute,
            max_deletions=max_deletions,
            return_state=True,
        )
    )
    summary = state.result(raise_on_failure=False)
    if not isinstance(summary, RetentionSummary):
        raise _fail(f"retention-enforcement failed: {summary}", code=1)
    body = {"state": state.name, "message": state.message, **summary.as_dict()}
    if as_json:
        _print_json(body)
    else:
        typer.echo(f"retention as of {summary.as_of}: {state.name} ({state.message})")
        _print_table([{"": k, "items": v} for k, v in summary.counts().items()], ["", "items"])
    if state.is_failed():
        raise typer.Exit(1)


@deletions_app.command("list")
def deletions_list(
    status: Annotated[
        str | None, typer.Option("--status", metavar="S", help="Only items in this status.")
    ] = None,
    company: CompanyFilterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deletion items: what, why, when due, and where each stands."""
    from consent_lifecycle.db.models import DELETION_STATUSES
    from consent_lifecycle.retention.store import items

    if status is not None and status not in DELETION_STATUSES:
        raise _fail(f"unknown status {status!r}: expected one of {', '.join(DELETION_STATUSES)}")
    rows = [{**r, "due_at": iso(r["due_at"])} for r in items(_engine(_settings()), company, status)]
    if as_json:
        _print_json(rows)
        return
    _print_table(
        rows, ["id", "status", "scope", "company_id", "connection_id", "data_type", "due_at", "reason"]
    )


@deletions_app.command("receipts")
def deletions_receipts(
    company: CompanyFilterOption = None,
    as_json: JsonOption = False,
) -> None:
    """One receipt per executed deletion: what, when, why, the consents checked, Codat's answer, rows purged."""
    from consent_lifecycle.retention.store import receipts

    rows = [{**r, "executed_at": iso(r["executed_at"])} for r in receipts(_engine(_settings()), company)]
    if as_json:
        _print_json(rows)
        return
    _print_table(rows, ["id", "item_id", "company_id", "executed_at", "codat_status", "rows_purged", "why"])
