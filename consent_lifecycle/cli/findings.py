"""`consent findings list`: the differences reconciliation found between consent and what Codat was set to
pull, pulled, or a product read."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from consent_lifecycle.cli.common import (
    CompanyFilterOption,
    JsonOption,
    command_group,
    fail,
    open_engine,
    print_json,
    print_table,
)
from consent_lifecycle.clock import iso

app = command_group("Reconciliation findings.")


@app.command("list")
def findings_list(
    kind: Annotated[str | None, typer.Option("--kind", metavar="K", help="Only this kind.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only findings not resolved.")] = False,
    company: CompanyFilterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Differences between consent and what was set to pull, pulled or read, oldest first."""
    from consent_lifecycle.db.models import FINDING_KINDS
    from consent_lifecycle.reconcile.store import list_findings

    if kind is not None and kind not in FINDING_KINDS:
        raise fail(f"unknown finding kind {kind!r}: expected one of {', '.join(FINDING_KINDS)}")
    with open_engine() as engine, engine.connect() as db:
        rows = [_finding(r) for r in list_findings(db, kind=kind, open_only=open_only, company_id=company)]
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["id", "kind", "company_id", "connection_id", "data_type", "product", "last_seen", "resolved_at"])


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
