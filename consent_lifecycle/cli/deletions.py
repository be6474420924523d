"""`consent deletions list / receipts / receipt`: deletion items (what retention plans to delete, and where each
stands) and the receipt of each one executed."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from consent_lifecycle.cli.common import (
    CompanyFilterOption,
    JsonOption,
    cell,
    command_group,
    fail,
    open_engine,
    print_json,
    print_table,
    row_id,
)
from consent_lifecycle.clock import iso

app = command_group("Deletion items and their receipts.")


@app.command("list")
def deletions_list(
    status: Annotated[str | None, typer.Option("--status", metavar="S", help="Only items in this status.")] = None,
    company: CompanyFilterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deletion items: what, why, when due, and where each stands."""
    from consent_lifecycle.db.models import DELETION_STATUSES
    from consent_lifecycle.retention.store import items

    if status is not None and status not in DELETION_STATUSES:
        raise fail(f"unknown status {status!r}: expected one of {', '.join(DELETION_STATUSES)}")
    with open_engine() as engine:
        rows = [{**r, "due_at": iso(r["due_at"])} for r in items(engine, company, status)]
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["id", "status", "scope", "company_id", "connection_id", "data_type", "due_at", "reason"])


@app.command("receipts")
def deletions_receipts(company: CompanyFilterOption = None, as_json: JsonOption = False) -> None:
    """One receipt per executed deletion: what, when, why, the consents checked, Codat's answer, rows purged."""
    from consent_lifecycle.retention.store import receipts

    with open_engine() as engine:
        rows = [_receipt(r) for r in receipts(engine, company)]
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["id", "item_id", "company_id", "executed_at", "codat_status", "rows_purged", "why"])


@app.command("receipt")
def deletions_receipt(
    receipt_id: Annotated[
        int,
        typer.Argument(parser=row_id, metavar="ID", help="The receipt's id (see `deletions receipts`).",
                       show_default=False),
    ],
    as_json: JsonOption = False,
) -> None:
    """One receipt by its id: what was deleted, when, why, the consents checked, Codat's answer, rows purged."""
    from consent_lifecycle.retention.store import receipts

    with open_engine() as engine:
        found = [_receipt(r) for r in receipts(engine, receipt_id=receipt_id)]
    if not found:
        raise fail(f"no deletion receipt {receipt_id} (`consent deletions receipts` lists them)")
    (row,) = found
    if as_json:
        print_json(row)
        return
    width = max(map(len, row))
    for key, value in row.items():
        text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else cell(value)
        typer.echo(f"{key.ljust(width)}  {text}".rstrip())


def _receipt(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "executed_at": iso(row["executed_at"])}
