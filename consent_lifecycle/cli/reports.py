"""What a flow run prints for the operator: shared by the commands that run flows and by `consent demo`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from consent_lifecycle.cli.common import print_json, print_table

if TYPE_CHECKING:
    from consent_lifecycle.expiry.scan import ScanSummary
    from consent_lifecycle.reconcile.summary import ReconciliationSummary
    from consent_lifecycle.snapshot.store import SyncSummary


def print_sync(summary: SyncSummary, as_json: bool) -> None:
    """snapshot-sync: connections by source type and status."""
    rows = summary.connections
    if as_json:
        print_json(rows)
        return
    typer.echo(
        f"{summary.companies} companies, {summary.connection_count} connections "
        f"({summary.new} new, {summary.changed} changed status, {summary.vanished} gone) "
        f"as of {summary.as_of}"
    )
    print_table(rows, ["source_type", "status", "connections"])


def print_scan(summary: ScanSummary, as_json: bool) -> None:
    """connection-expiry-scan: connections by class, and the notices."""
    if as_json:
        print_json(summary.as_dict())
        return
    typer.echo(
        f"expiry scan as of {summary.as_of}{' (dry run)' if summary.dry_run else ''}: "
        f"{summary.companies} companies, {summary.new} new connections, {summary.changed} changed status"
    )
    print_table([{"class": k, "connections": v} for k, v in summary.classes.items()], ["class", "connections"])
    typer.echo(
        f"notifications: {summary.notifications_planned} due, {summary.notifications_queued or 0} new"
        + (", delivery " + ", ".join(f"{k} {v}" for k, v in summary.delivery.items()) if summary.delivery else "")
        + f"; Codat requests: {summary.codat_requests}"
    )


def print_reconciliation(summary: ReconciliationSummary, as_json: bool) -> None:
    """consent-reconciliation: findings by kind, and the remediation."""
    if as_json:
        print_json(summary.as_dict())
        return
    typer.echo(
        f"reconciliation as of {summary.as_of}{' (dry run)' if summary.dry_run else ''}: "
        f"{summary.companies} companies, {summary.pulls_read} pulls read, {summary.new} new findings, "
        f"{summary.resolved} resolved"
    )
    reasons = ", ".join(f"{k} {v}" for k, v in summary.reasons.items()) or "none"
    typer.echo(
        f"selection: {summary.selection} ({reasons})"
        + (f"; {summary.deferred} deferred by the request budget (~{summary.estimated_minutes} min)"
           if summary.deferred else "")
        + f"; Codat requests: {summary.codat_requests}"
    )
    print_table([{"finding": k, "count": v} for k, v in summary.findings.items()], ["finding", "count"])
    typer.echo(
        f"remediation: sync settings set for {summary.sync_settings_set} of {summary.sync_settings_to_set} "
        f"companies, {summary.pulls_queued} of {summary.pulls_to_queue} missing pulls queued, "
        f"{summary.deletion_items_opened} deletion items opened"
    )
