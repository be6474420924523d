"""The consent ledger: `consent grant / extend / reconfirm / revoke / disconnect / impact / show / history`.

Every argument is checked (ids, product, data types, channel, times) before the database is opened; what
only the database can tell (unknown company, a product not granted...) comes back from the ledger as a
ConsentError, which exits 2 with its message, the transaction rolled back.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from consent_lifecycle.catalog import Catalog
from consent_lifecycle.cli.common import (
    ActorOption,
    AtOption,
    CompanyArgument,
    JsonOption,
    at_or_now,
    cell,
    checked_time,
    connection_id,
    connection_ids,
    default_actor,
    fail,
    iso_time,
    open_ledger,
    optional_connection_id,
    print_json,
    print_table,
    product_key,
    read_catalog,
    top_level_commands,
)
from consent_lifecycle.clock import utcnow

app = top_level_commands()


def _channel(value: str | None) -> str | None:
    from consent_lifecycle.ledger import CHANNELS

    if value is not None and value not in CHANNELS:
        raise typer.BadParameter(f"unknown channel {value!r}: expected one of {', '.join(CHANNELS)}")
    return value


def _product_data_types(catalog: Catalog, product: str, keys: list[str] | None) -> list[str] | None:
    """`--data-type` values: Codat data types the product declares (required or optional)."""
    from consent_lifecycle.ledger import ConsentError
    from consent_lifecycle.ledger.scope import check_data_types

    if not keys:
        return None
    try:
        return sorted(check_data_types(catalog.product(product), keys))
    except ConsentError as exc:
        raise fail(str(exc)) from None


ConnectionsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--connection", callback=connection_ids, metavar="ID", show_default=False,
        help="Connection id (uuid) the consent covers (repeatable).",
    ),
]
DataTypesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--data-type", metavar="KEY", show_default=False,
        help="Codat data type key the consent covers (repeatable).",
    ),
]
WordingOption = Annotated[
    str | None,
    typer.Option(
        "--wording-version", metavar="V", show_default=False,
        help="Version of the consent wording the customer saw (default: catalog-<version>).",
    ),
]
ChannelOption = Annotated[
    str,
    typer.Option("--channel", callback=_channel, metavar="ui|api|cli", help="Where it was given: ui, api or cli."),
]
PreviewAtOption = Annotated[
    str | None,
    typer.Option(
        "--at", callback=checked_time, metavar="ISO", help="Preview as of this ISO 8601 time (default: now).",
        show_default=False,
    ),
]
YesOption = Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]
ProductArgument = Annotated[
    str, typer.Argument(metavar="PRODUCT", help="Product key from the catalog.", show_default=False)
]
ConnectionArgument = Annotated[
    str,
    typer.Argument(callback=connection_id, metavar="CONNECTION", help="Connection id (uuid).", show_default=False),
]


def _grant_or_extend(
    action: str, company: str, product: str, connection: list[str] | None, data_type: list[str] | None,
    wording_version: str | None, actor: str | None, channel: str, at: str | None, as_json: bool,
) -> None:
    catalog = read_catalog()
    product = product_key(catalog, product)
    data_types = _product_data_types(catalog, product, data_type)
    when = at_or_now(at)
    if wording_version is not None and not wording_version.strip():
        raise fail("--wording-version must not be empty")
    with open_ledger(catalog) as ledger:
        view = getattr(ledger, action)(
            company, product, connections=connection, data_types=data_types,
            wording_version=wording_version or f"catalog-{catalog.version}",
            actor=actor or default_actor(), channel=channel, at=when,
        )
    _print_consent(company, view.as_dict(), as_json, "granted" if action == "grant" else "extended")


def _print_consent(company: str, consent: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        print_json({"company_id": company, **consent})
        return
    typer.echo(
        f"{verb} {consent['product']!r} for company {company} "
        f"({consent['status']}, wording {consent.get('wording_version')}, at {consent.get('updated_at')})"
    )
    typer.echo(f"data types:  {cell(consent['data_types'])}")
    typer.echo(f"connections: {cell(consent['connections'])}")


@app.command("grant")
def grant(
    company: CompanyArgument,
    product: ProductArgument,
    connection: ConnectionsOption = None,
    data_type: DataTypesOption = None,
    wording_version: WordingOption = None,
    actor: ActorOption = None,
    channel: ChannelOption = "cli",
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a customer's consent to a product (default: its required data types on the company's
    Linked connections that carry them)."""
    _grant_or_extend("grant", company, product, connection, data_type, wording_version, actor, channel, at, as_json)


@app.command("extend")
def extend(
    company: CompanyArgument,
    product: ProductArgument,
    connection: ConnectionsOption = None,
    data_type: DataTypesOption = None,
    wording_version: WordingOption = None,
    actor: ActorOption = None,
    channel: ChannelOption = "cli",
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add data types or connections to a product already granted ("I'm happy to share additional data")."""
    _grant_or_extend("extend", company, product, connection, data_type, wording_version, actor, channel, at, as_json)


@app.command("reconfirm")
def reconfirm(
    company: CompanyArgument,
    product: ProductArgument,
    actor: ActorOption = None,
    channel: ChannelOption = "cli",
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record the customer's periodic reconfirmation (Open Banking): the consent stands, the expiry restarts."""
    catalog = read_catalog()
    product = product_key(catalog, product)
    when = at_or_now(at)
    with open_ledger(catalog) as ledger:
        view = ledger.reconfirm(company, product, actor=actor or default_actor(), channel=channel, at=when)
    _print_consent(company, view.as_dict(), as_json, "reconfirmed")


@app.command("revoke")
def revoke(
    company: CompanyArgument,
    product: ProductArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the ledger).")] = "customer request",
    yes: YesOption = False,
    actor: ActorOption = None,
    channel: ChannelOption = "cli",
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Withdraw consent to a product. Shows what it deletes (and when) and what other products keep, first."""
    catalog = read_catalog()
    product = product_key(catalog, product)
    when = at_or_now(at)
    with open_ledger(catalog) as ledger:
        preview = ledger.impact_of_revoke(company, product, when)
        shown = _confirm(preview.as_dict(), yes, as_json, f"Revoke {product!r} for company {company}?")
        effect = ledger.revoke(
            company, product, reason=reason, actor=actor or default_actor(), channel=channel, at=when
        )
    _print_done(effect.as_dict(), as_json, shown)


@app.command("disconnect")
def disconnect(
    company: CompanyArgument,
    connection: ConnectionArgument,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (recorded in the ledger).", show_default=False)
    ] = None,
    yes: YesOption = False,
    actor: ActorOption = None,
    channel: ChannelOption = "cli",
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a connection from every product using it. Shows what it deletes and keeps, first."""
    catalog = read_catalog()
    when = at_or_now(at)
    with open_ledger(catalog) as ledger:
        preview = ledger.impact_of_disconnect(company, connection, when)
        shown = _confirm(preview.as_dict(), yes, as_json, f"Disconnect {connection} of company {company}?")
        effect = ledger.disconnect(
            company, connection, actor=actor or default_actor(), channel=channel, at=when, reason=reason
        )
    _print_done(effect.as_dict(), as_json, shown)


def _interactive() -> bool:
    return sys.stdin.isatty()


def _confirm(preview: dict[str, Any], yes: bool, as_json: bool, question: str) -> bool:
    """Show the impact and ask (True: it was shown). A non-interactive stdin without --yes is refused
    with exit 2 before anything is written; answering no exits 1, nothing written either."""
    if yes:
        return False
    _print_impact(preview, as_json=False, err=as_json)  # with --json, stdout keeps only the JSON
    if not _interactive():
        raise fail("not confirmed: stdin is not a terminal; pass --yes to proceed without asking")
    if not typer.confirm(question, default=False, err=as_json):
        raise fail("not confirmed: nothing was changed", code=1)
    return True


def _print_done(body: dict[str, Any], as_json: bool, preview_shown: bool) -> None:
    """The impact as it was applied: in full, unless the same preview was just confirmed on screen."""
    if as_json or not preview_shown:
        _print_impact(body, as_json, done=True)
        return
    what = f"disconnected {body['connection_id']}" if body.get("connection_id") else f"revoked {body['product']!r}"
    typer.echo(
        f"{what} for company {body['company_id']}: {len(body['delete'])} data type(s) to delete after retention, "
        f"{len(body['keep'])} kept for other products"
    )


@app.command("impact")
def impact(
    company: CompanyArgument,
    product: Annotated[
        str | None, typer.Argument(metavar="PRODUCT", help="Product key: preview revoking it.", show_default=False)
    ] = None,
    connection: Annotated[
        str | None,
        typer.Option(
            "--connection", callback=optional_connection_id, metavar="ID",
            help="Preview disconnecting this connection instead.", show_default=False,
        ),
    ] = None,
    at: PreviewAtOption = None,
    as_json: JsonOption = False,
) -> None:
    """What revoking a product (or disconnecting a connection) would delete, when, and what it keeps."""
    catalog = read_catalog()
    if (product is None) == (connection is None):
        raise fail("name a PRODUCT to preview a revocation, or --connection ID to preview a disconnection")
    key = product_key(catalog, product) if product is not None else None
    when = at_or_now(at)
    with open_ledger(catalog) as ledger:
        if key is not None:
            effect = ledger.impact_of_revoke(company, key, when)
        else:
            effect = ledger.impact_of_disconnect(company, connection, when)
    _print_impact(effect.as_dict(), as_json)


def _print_impact(body: dict[str, Any], as_json: bool, *, done: bool = False, err: bool = False) -> None:
    if as_json:
        print_json(body)
        return
    what = f"disconnecting {body['connection_id']}" if body.get("connection_id") else f"revoking {body['product']!r}"
    head = "Done: " if done else "Impact of "
    typer.echo(f"{head}{what} for company {body['company_id']} at {body.get('at') or ''}", err=err)
    if body["delete"]:
        typer.echo("to delete (no remaining consent needs it), after retention:", err=err)
        rows = _grouped(body["delete"], ["connection_id", "due_at"])
        print_table(rows, ["connection_id", "due_at", "data_types"], indent=2, err=err)
    else:
        typer.echo("nothing to delete", err=err)
    if body["keep"]:
        typer.echo("kept (another product still needs it):", err=err)
        rows = _grouped([{**r, "needed_by": ",".join(r["needed_by"])} for r in body["keep"]], ["connection_id", "needed_by"])
        print_table(rows, ["connection_id", "needed_by", "data_types"], indent=2, err=err)
    if body["connections_losing_all_consent"]:
        typer.echo(f"connections losing all consent: {', '.join(body['connections_losing_all_consent'])}", err=err)


def _grouped(rows: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """Rows sharing `keys` folded into one, their data types listed together (short tables)."""
    groups: dict[tuple, list[str]] = {}
    for row in rows:
        groups.setdefault(tuple(str(row[k]) for k in keys), []).append(row["data_type"])
    return [{**dict(zip(keys, key, strict=True)), "data_types": types} for key, types in groups.items()]


@app.command("show")
def show(
    company: CompanyArgument,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", callback=checked_time, metavar="ISO", help="The consents as they stood at this ISO 8601 time.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """A company's consents and what may be pulled (entitlements), now or as of a past time."""
    when = iso_time(as_of)
    with open_ledger() as ledger:
        body = ledger.show(company, when, now=None if when else utcnow())
    if as_json:
        print_json(body)
        return
    typer.echo(f"company {body['company_id']}" + (f" as of {body['as_of']}" if body.get("as_of") else ""))
    if not body["consents"]:
        typer.echo("no consents")
        return
    print_table(
        [{**c, "data_types": len(c["data_types"])} for c in body["consents"]],
        ["product", "status", "data_types", "granted_at", "revoked_at", "wording_version", "connections"],
    )
    typer.echo("")
    if not body["entitlements"]:
        typer.echo("no entitlements (nothing may be pulled)")
        return
    typer.echo("entitlements (what may be pulled):")
    rows = [{**e, "products": ",".join(e["products"])} for e in body["entitlements"]]
    print_table(_grouped(rows, ["connection_id", "products"]), ["connection_id", "products", "data_types"], indent=2)


@app.command("history")
def history(company: CompanyArgument, as_json: JsonOption = False) -> None:
    """The ledger of a company's consent events, oldest first."""
    with open_ledger() as ledger:
        events = ledger.history(company)
    if as_json:
        print_json(events)
        return
    if not events:
        typer.echo("no consent events")
        return
    print_table(
        events,
        ["event_id", "at", "product", "event_type", "data_types", "connection_ids", "wording_version", "actor",
         "channel", "reason"],
    )
