"""`consent`: the command line.

Bad input exits 2 with a message naming the bad value, before anything is written. Commands that print
data take `--json` (snake_case keys, times in ISO 8601 UTC). Commands that run a job run it as a Prefect
flow, so it shows in the Prefect UI when a server is configured (ephemeral Prefect otherwise).

One module per command group, each on `consent_lifecycle.cli.common` (and the flow reports) only; this
module just puts them together, in the order `consent --help` lists them.
"""

from __future__ import annotations

import sys

import typer

from consent_lifecycle.cli import (
    access,
    api,
    catalog,
    connections,
    db,
    deletions,
    demo,
    findings,
    holds,
    ledger,
    notifications,
    run,
    sandbox,
    sync,
    webhooks,
)

app = typer.Typer(
    name="consent",
    help="Keep the use of customers' Codat data inside what each customer consented to.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain errors: the bad value is never wrapped or cut by a box
)
for commands in (sync.app, ledger.app, demo.app):  # top-level commands: `consent sync`, `consent grant`...
    app.add_typer(commands)
for name, group in (
    ("db", db.app),
    ("sandbox", sandbox.app),
    ("catalog", catalog.app),
    ("hold", holds.app),
    ("run", run.app),
    ("notifications", notifications.app),
    ("connections", connections.app),
    ("backfill", run.backfill_app),
    ("findings", findings.app),
    ("access", access.app),
    ("deletions", deletions.app),
    ("webhooks", webhooks.app),
    ("api", api.app),
    ("api-keys", api.keys_app),
):
    app.add_typer(group, name=name)


def main() -> None:
    """Entry point: Click reports usage errors with exit 2 itself; input errors found later exit 2 too."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
