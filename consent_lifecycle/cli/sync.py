"""`consent sync`: the flow snapshot-sync, reading companies and connections from Codat into the snapshot."""

from __future__ import annotations

from consent_lifecycle.cli.common import (
    SNAPSHOT_SYNC,
    CompaniesOption,
    JsonOption,
    NowOption,
    company_ids,
    iso_time,
    run_flow,
    top_level_commands,
)
from consent_lifecycle.cli.reports import print_sync

app = top_level_commands()


@app.command("sync")
def sync(company: CompaniesOption = None, now: NowOption = None, as_json: JsonOption = False) -> None:
    """Read companies and connections from Codat into the snapshot."""
    scope = company_ids(company)
    at = iso_time(now)
    print_sync(run_flow(SNAPSHOT_SYNC, company_ids=scope, now=at), as_json)
