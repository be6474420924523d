"""`consent hold add / release / list`: legal holds block deletion, never consent."""

from __future__ import annotations

from typing import Annotated

import typer

from consent_lifecycle.cli.common import (
    ROW_ID,
    ActorOption,
    AtOption,
    CompanyArgument,
    JsonOption,
    at_or_now,
    command_group,
    data_type,
    default_actor,
    fail,
    open_ledger,
    optional_company_id,
    print_json,
    print_table,
)

app = command_group("Legal holds: block deletion (never consent).")


@app.command("add")
def hold_add(
    company: CompanyArgument,
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why the data must be kept.", show_default=False)],
    data_type_key: Annotated[
        str | None,
        typer.Option("--data-type", metavar="KEY", help="Only this Codat data type (default: all the company's data).",
                     show_default=False),
    ] = None,
    actor: ActorOption = None,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Place a legal hold on a company's data (or one data type of it)."""
    if data_type_key is not None:
        data_type(data_type_key)
    if not reason.strip():
        raise fail("--reason must not be empty")
    when = at_or_now(at)
    with open_ledger() as ledger:
        hold_id = ledger.add_hold(
            company, data_type=data_type_key, reason=reason, actor=actor or default_actor(), at=when
        )
        hold = next((h for h in ledger.holds(company) if h["hold_id"] == hold_id), {"hold_id": hold_id})
    if as_json:
        print_json(hold)
        return
    typer.echo(f"legal hold {hold_id} placed on company {company}" + (f" ({data_type_key})" if data_type_key else ""))


@app.command("release")
def hold_release(
    hold_id: Annotated[int, typer.Argument(callback=ROW_ID, metavar="HOLD_ID", help="The hold's id.", show_default=False)],
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Release a legal hold: its data may be deleted again once no consent needs it."""
    when = at_or_now(at)
    with open_ledger() as ledger:
        ledger.release_hold(hold_id, at=when)
        hold = next(h for h in ledger.holds(include_released=True) if h["hold_id"] == hold_id)
    if as_json:
        print_json(hold)
        return
    typer.echo(f"legal hold {hold_id} released at {hold['released_at']}")


@app.command("list")
def hold_list(
    company: Annotated[
        str | None,
        typer.Option("--company", callback=optional_company_id, metavar="ID", help="Only this company id.", show_default=False),
    ] = None,
    include_released: Annotated[bool, typer.Option("--all", help="Include released holds.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Legal holds in force (with --all: released ones too)."""
    with open_ledger() as ledger:
        holds = ledger.holds(company, include_released=include_released)
    if as_json:
        print_json(holds)
        return
    if not holds:
        typer.echo("no legal holds")
        return
    print_table(holds, ["hold_id", "company_id", "data_type", "reason", "placed_by", "placed_at", "released_at"])
