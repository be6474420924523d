"""`consent demo`: the sandbox (package `codat_sandbox`) in-process, the expiry scan and the reconciliation
on it, and what they found."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from consent_lifecycle.catalog import Catalog
from consent_lifecycle.cli.common import (
    EXPIRY_SCAN,
    RECONCILIATION,
    open_engine,
    print_table,
    read_catalog,
    run_flow,
    safe_url,
    settings,
    top_level_commands,
    within,
)
from consent_lifecycle.cli.reports import print_reconciliation, print_scan
from consent_lifecycle.clock import parse_iso

app = top_level_commands()


@app.command("demo")
def demo(
    companies: Annotated[int, typer.Option(callback=within(1, 100_000), help="Companies in the sandbox.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of the sandbox world.")] = 7,
) -> None:
    """Start the sandbox in-process, run the expiry scan on it, and print what was found."""
    from codat_sandbox.config import SandboxConfig
    from codat_sandbox.runner import running_sandbox

    catalog = read_catalog()
    key = secrets.token_urlsafe(24)
    config = SandboxConfig(api_key=key, companies=companies, seed=seed)
    with (
        running_sandbox(config) as sandbox,
        # the in-process sandbox is not Codat: no share of a real rate limit to keep to
        _environment(
            CONSENT_CODAT_BASE_URL=sandbox.base_url, CONSENT_CODAT_API_KEY=key, CONSENT_CODAT_MAX_REQUESTS_PER_MINUTE="0"
        ),
    ):
        configured = settings()
        typer.echo(f"sandbox at {sandbox.base_url}: {companies} companies (seed {seed})")
        typer.echo(f"database: {safe_url(configured.database_url)}")
        print_scan(run_flow(EXPIRY_SCAN, company_ids=None, now=None, dry_run=False), as_json=False)
        typer.echo(
            f"notices written to {configured.notify_file} (set CONSENT_NOTIFY_WEBHOOK_URL to POST them instead)"
        )
        typer.echo("")
        granted = _demo_consents(catalog, sandbox)
        typer.echo(f"consents recorded from the companies' Codat products: {granted}")
        # the demo's database may hold an earlier demo's cursors: read every company, as a first install does
        reconciled = run_flow(RECONCILIATION, dry_run=False, full=True)
    print_reconciliation(reconciled, as_json=False)
    typer.echo("")
    _retention_next_steps()
    typer.echo("")
    typer.echo(f"products in catalog {catalog.version}:")
    print_table(catalog.rows(), ["key", "name", "retention_days", "required"])


def _demo_consents(catalog: Catalog, sandbox: Any) -> int:
    """Record, once, the consent each sandbox company gave at its first link to the products Codat lists for
    it (a stand-in for the onboarding journey), so the reconciliation has consent to compare against."""
    import httpx

    from consent_lifecycle.ledger import ConsentError, Ledger

    with httpx.Client(base_url=sandbox.base_url, headers=sandbox.auth_header, timeout=30) as http:
        companies = http.get("/companies", params={"pageSize": 5000}).json()["results"]
    granted = 0
    with open_engine() as engine:
        ledger = Ledger(engine, catalog)
        for company in companies:  # demo set-up, a few dozen companies: one ledger call per grant
            if ledger.consents(company["id"]):
                continue
            for product in (p for p in company.get("products", []) if p in catalog.products):
                try:
                    ledger.grant(company["id"], product, wording_version=f"v{catalog.version}", actor="onboarding",
                                 channel="ui", at=parse_iso(company["created"]))
                    granted += 1
                except ConsentError:  # no Linked connection of the kind the product reads
                    continue
    return granted


def _retention_next_steps() -> None:
    """What the deletion items the reconciliation opened (data pulled without consent, due at once) mean for
    the first retention run, and what an operator does about them."""
    from consent_lifecycle.clock import utcnow
    from consent_lifecycle.retention.store import count_due

    with open_engine() as engine:
        due = count_due(engine, utcnow()).count
    if not due:
        typer.echo("retention: no deletion item is due")
        return
    typer.echo(
        f"retention: {due} deletion items are due now (data Codat pulled without consent). A retention run deletes "
        "at most --max-deletions (1000 by default; the scheduled deployment too) and otherwise fails, deleting "
        "nothing, naming the products and companies. Next:"
    )
    typer.echo("  consent run retention                          # a dry run: plans and counts, deletes nothing")
    typer.echo("  consent deletions list --status planned        # review what would be deleted")
    typer.echo(f"  consent run retention --execute --max-deletions {due}   # then delete, with a receipt each")


@contextmanager
def _environment(**variables: str) -> Iterator[None]:
    """Set environment variables (the tasks read their settings there) and restore them afterwards."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
