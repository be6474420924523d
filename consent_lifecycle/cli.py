"""`consent`: the command line.

Bad input exits 2 with a message naming the bad value, before anything is written. Commands that print
data take `--json` (snake_case keys, times in ISO 8601 UTC). Commands that run a job run it as a Prefect
flow, so it shows in the Prefect UI when a server is configured (ephemeral Prefect otherwise).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from consent_lifecycle.catalog import Catalog, CatalogError, load_catalog
from consent_lifecycle.clock import parse_iso, utcnow
from consent_lifecycle.settings import Settings

if TYPE_CHECKING:
    from consent_lifecycle.expiry.scan import ScanSummary
    from consent_lifecycle.snapshot.store import SyncSummary

app = typer.Typer(
    name="consent",
    help="Keep the use of customers' Codat data inside what each customer consented to.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain errors: the bad value is never wrapped or cut by a box
)
db_app = typer.Typer(rich_markup_mode=None, help="The consent database.", no_args_is_help=True)
sandbox_app = typer.Typer(rich_markup_mode=None, help="The Codat-compatible sandbox server.", no_args_is_help=True)
catalog_app = typer.Typer(rich_markup_mode=None, help="The product catalog.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(catalog_app, name="catalog")

INPUT_ERROR = 2


# -- argument parsers: each names the bad value --------------------------------------------------


def _iso_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _within(low: int, high: int | None = None) -> Callable[[int | None], int | None]:
    """A callback refusing integers outside [low, high], naming the value (Typer's own message does not)."""

    def check(value: int | None) -> int | None:
        if value is not None and (value < low or (high is not None and value > high)):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise typer.BadParameter(f"{value} is not in the range {bound}")
        return value

    return check


def _company_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise typer.BadParameter(f"not a company id (uuid): {value!r}") from None


def _company_ids(values: list[str] | None) -> list[str] | None:
    return [_company_id(v) for v in values] if values else None


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (snake_case keys, ISO 8601 UTC times).")]
NowOption = Annotated[
    str | None,
    typer.Option("--now", help="Decide as of this ISO 8601 time (default: the current time).", show_default=False),
]
CatalogOption = Annotated[
    Path | None,
    typer.Option("--catalog", help="Product catalog TOML (default: $CONSENT_CATALOG or the shipped one)."),
]


def _fail(message: str, code: int = INPUT_ERROR) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    from pydantic_settings import SettingsError

    try:
        settings = Settings()
    except ValidationError as exc:  # names the variable and the value
        raise _fail(f"bad CONSENT_ setting: {exc}") from None
    except SettingsError as exc:  # a complex value (JSON) that does not parse: names the field and why
        raise _fail(f"bad CONSENT_ setting: {exc}: {exc.__cause__}") from None
    _check_database_url(settings.database_url)
    return settings


def _check_database_url(url: str) -> None:
    """Refuse a CONSENT_DATABASE_URL that is not SQLite or PostgreSQL before anything opens it (the message
    shows the URL with its password hidden)."""
    from consent_lifecycle.db.engine import normalize_url

    try:
        backend = normalize_url(url).get_backend_name()
    except ValueError as exc:
        raise _fail(f"bad CONSENT_DATABASE_URL: {exc}") from None
    if backend not in ("sqlite", "postgresql"):
        raise _fail(
            f"bad CONSENT_DATABASE_URL: unsupported database {_safe_url(url)}: "
            "use sqlite:///path/to/file.db or postgresql://..."
        )


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max([len(c), *(len(_cell(r.get(c))) for r in rows)]) for c in columns}
    typer.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        typer.echo("  ".join(_cell(row.get(c)).ljust(widths[c]) for c in columns))


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(sorted(map(str, value)))
    return "" if value is None else str(value)


# -- db ------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Option(help="Target revision.")] = "head") -> None:
    """Create or migrate the database at $CONSENT_DATABASE_URL."""
    from consent_lifecycle.db.migrate import current, upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at {_safe_url(settings.database_url)} is at revision {current(settings.database_url)}")


# -- sandbox -------------------------------------------------------------------------------------


@sandbox_app.command("serve")
def sandbox_serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(callback=_within(0, 65535), help="Port to bind.")] = 8710,
    companies: Annotated[int, typer.Option(callback=_within(0, 1_000_000), help="Companies to seed.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of the generated world.")] = 7,
    api_key: Annotated[
        str | None,
        typer.Option(help="Key clients must send (default: $CONSENT_CODAT_API_KEY).", show_default=False),
    ] = None,
    state: Annotated[Path | None, typer.Option(help="SQLite file for the sandbox state (default: memory).")] = None,
    rate_limit_per_minute: Annotated[
        int, typer.Option(callback=_within(1), help="Requests per minute per client.")
    ] = 1000,
    concurrent_per_company: Annotated[
        int, typer.Option(callback=_within(1), help="Concurrent requests per company.")
    ] = 10,
    now: NowOption = None,
    eager_history: Annotated[
        bool,
        typer.Option(help="Make every company's pull history at start (as Codat has it), not on its first read."),
    ] = False,
) -> None:
    """Serve a Codat-compatible API over HTTP, seeded deterministically."""
    from codat_sandbox.config import SandboxConfig
    from codat_sandbox.runner import serve

    frozen = _iso_time(now)
    key = api_key or (_settings().codat_api_key.get_secret_value() if _settings().codat_api_key else None)
    if not key:
        raise _fail("no API key: pass --api-key or set CONSENT_CODAT_API_KEY")
    config = SandboxConfig(
        api_key=key,
        companies=companies,
        seed=seed,
        state_path=str(state) if state else None,
        rate_limit_per_minute=rate_limit_per_minute,
        concurrent_per_company=concurrent_per_company,
        now=frozen,
        eager_history=eager_history,
    )
    typer.echo(f"Codat sandbox: http://{host}:{port} ({companies} companies, seed {seed})", err=True)
    serve(config, host=host, port=port)


# -- catalog -------------------------------------------------------------------------------------


@catalog_app.command("show")
def catalog_show(as_json: JsonOption = False, catalog: CatalogOption = None) -> None:
    """Products, their data types and retention."""
    loaded = _load_catalog(catalog)
    rows = loaded.rows()
    if as_json:
        _print_json(rows)
        return
    typer.echo(f"catalog version {loaded.version}")
    _print_table(rows, ["key", "name", "retention_days", "required", "optional"])


def _load_catalog(path: Path | None) -> Catalog:
    try:
        return load_catalog(path or _settings().catalog)
    except CatalogError as exc:
        raise _fail(str(exc)) from None


# -- sync ----------------------------------------------------------------------------------------


@app.command("sync")
def sync(
    company: Annotated[
        list[str] | None,
        typer.Option("--company", help="Only this company id (repeatable).", show_default=False),
    ] = None,
    now: NowOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read companies and connections from Codat into the snapshot."""
    company_ids = _company_ids(company)
    at = _iso_time(now)
    settings = _settings()
    if settings.codat_api_key is None:
        raise _fail("CONSENT_CODAT_API_KEY is not set (see README: pointing at real Codat)")
    summary = _run_sync(settings, company_ids, at)
    _print_summary(summary, as_json)


def _run_sync(settings: Settings, company_ids: list[str] | None, now: datetime | None) -> SyncSummary:
    from consent_lifecycle.codat import CodatError
    from consent_lifecycle.db.migrate import upgrade
    from flows.snapshot_sync import snapshot_sync

    upgrade(settings.database_url)
    try:
        return asyncio.run(snapshot_sync(company_ids=company_ids, now=now))
    except CodatError as exc:
        raise _fail(str(exc), code=1) from None


def _print_summary(summary: SyncSummary, as_json: bool) -> None:
    rows = summary.connections
    if as_json:
        _print_json(rows)
        return
    typer.echo(
        f"{summary.companies} companies, {summary.connection_count} connections "
        f"({summary.new} new, {summary.changed} changed status, {summary.vanished} gone) "
        f"as of {summary.as_of}"
    )
    _print_table(rows, ["source_type", "status", "connections"])


# -- the consent ledger --------------------------------------------------------------------------
# Every argument is checked (ids, product, data types, channel, times) before the database is opened;
# what only the database can tell (unknown company, a product not granted...) comes back from the ledger
# as a ConsentError, which exits 2 with its message, the transaction rolled back.


def _connection_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise typer.BadParameter(f"not a connection id (uuid): {value!r}") from None


def _connection_ids(values: list[str] | None) -> list[str] | None:
    return [_connection_id(v) for v in values] if values else None


def _optional_connection_id(value: str | None) -> str | None:
    return None if value is None else _connection_id(value)


def _optional_company_id(value: str | None) -> str | None:
    return None if value is None else _company_id(value)


#: a list command's filter (one company)
CompanyFilterOption = Annotated[
    str | None,
    typer.Option("--company", callback=_optional_company_id, metavar="ID", help="Only this company."),
]


def _channel(value: str | None) -> str | None:
    from consent_lifecycle.ledger import CHANNELS

    if value is not None and value not in CHANNELS:
        raise typer.BadParameter(f"unknown channel {value!r}: expected one of {', '.join(CHANNELS)}")
    return value


def _checked_time(value: str | None) -> str | None:
    """Callback: refuse a bad ISO time while parsing (naming the option); the text is kept as given."""
    _iso_time(value)
    return value


def _default_actor() -> str:
    import getpass

    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        user = "unknown"
    return f"cli:{user}"


def _at(value: str | None) -> datetime:
    """`--at`: the given ISO time, or now (the edge is where the clock is read)."""
    return _iso_time(value) or utcnow()


def _product_key(catalog: Catalog, key: str) -> str:
    try:
        return catalog.product(key).key
    except CatalogError as exc:
        raise _fail(str(exc)) from None


def _data_type(key: str) -> str:
    from consent_lifecycle.ledger import ConsentError
    from consent_lifecycle.ledger.scope import check_data_type_key

    try:
        return check_data_type_key(key)
    except ConsentError as exc:
        raise _fail(str(exc)) from None


def _product_data_types(catalog: Catalog, product: str, keys: list[str] | None) -> list[str] | None:
    """`--data-type` values: Codat data types the product declares (required or optional)."""
    from consent_lifecycle.ledger import ConsentError
    from consent_lifecycle.ledger.scope import check_data_types

    if not keys:
        return None
    try:
        return sorted(check_data_types(catalog.product(product), keys))
    except ConsentError as exc:
        raise _fail(str(exc)) from None


@contextmanager
def _ledger(catalog: Catalog | None = None) -> Iterator[Any]:
    """The ledger on the configured database (migrated first); a ConsentError exits 2 with its message."""
    from consent_lifecycle.db.engine import make_engine
    from consent_lifecycle.db.migrate import upgrade
    from consent_lifecycle.ledger import ConsentError, Ledger

    settings = _settings()
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    events = _prefect_events()
    try:
        yield Ledger(engine, catalog or _load_catalog(None), on_change=events and events.emit_ledger_change)
    except ConsentError as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.dispose()
        if events:
            events.flush()


def _prefect_events() -> Any:
    """`tasks.events` when PREFECT_API_URL names a Prefect server (revocations and disconnections are then
    announced to it as events, for its automations), else None: Prefect is not even imported."""
    if not os.environ.get("PREFECT_API_URL"):
        return None
    import tasks.events

    return tasks.events


ConnectionsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--connection", callback=_connection_ids, metavar="ID", show_default=False,
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
ActorOption = Annotated[
    str | None,
    typer.Option("--actor", metavar="A", help="Who recorded it (default: cli:<OS user>).", show_default=False),
]
ChannelOption = Annotated[
    str,
    typer.Option("--channel", callback=_channel, metavar="ui|api|cli", help="Where it was given: ui, api or cli."),
]
AtOption = Annotated[
    str | None,
    typer.Option(
        "--at", callback=_checked_time, metavar="ISO", show_default=False,
        help="When it happened, ISO 8601 (default: now).",
    ),
]
PreviewAtOption = Annotated[
    str | None,
    typer.Option(
        "--at", callback=_checked_time, metavar="ISO", help="Preview as of this ISO 8601 time (default: now).",
        show_default=False,
    ),
]
YesOption = Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]
CompanyArgument = Annotated[
    str, typer.Argument(callback=_company_id, metavar="COMPANY", help="Company id (uuid).", show_default=False)
]
ProductArgument = Annotated[
    str, typer.Argument(metavar="PRODUCT", help="Product key from the catalog.", show_default=False)
]
ConnectionArgument = Annotated[
    str,
    typer.Argument(callback=_connection_id, metavar="CONNECTION", help="Connection id (uuid).", show_default=False),
]


def _grant_or_extend(
    action: str, company: str, product: str, connection: list[str] | None, data_type: list[str] | None,
    wording_version: str | None, actor: str | None, channel: str, at: str | None, as_json: bool,
) -> None:
    catalog = _load_catalog(None)
    product = _product_key(catalog, product)
    data_types = _product_data_types(catalog, product, data_type)
    when = _at(at)
    if wording_version is not None and not wording_version.strip():
        raise _fail("--wording-version must not be empty")
    with _ledger(catalog) as ledger:
        view = getattr(ledger, action)(
            company, product, connections=connection, data_types=data_types,
            wording_version=wording_version or f"catalog-{catalog.version}",
            actor=actor or _default_actor(), channel=channel, at=when,
        )
    _print_consent(company, view.as_dict(), as_json, "granted" if action == "grant" else "extended")


def _print_consent(company: str, consent: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        _print_json({"company_id": company, **consent})
        return
    typer.echo(
        f"{verb} {consent['product']!r} for company {company} "
        f"({consent['status']}, wording {consent.get('wording_version')}, at {consent.get('updated_at')})"
    )
    typer.echo(f"data types:  {_cell(consent['data_types'])}")
    typer.echo(f"connections: {_cell(consent['connections'])}")


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
    catalog = _load_catalog(None)
    product = _product_key(catalog, product)
    when = _at(at)
    with _ledger(catalog) as ledger:
        view = ledger.reconfirm(company, product, actor=actor or _default_actor(), channel=channel, at=when)
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
    catalog = _load_catalog(None)
    product = _product_key(catalog, product)
    when = _at(at)
    with _ledger(catalog) as ledger:
        preview = ledger.impact_of_revoke(company, product, when)
        shown = _confirm(preview.as_dict(), yes, as_json, f"Revoke {product!r} for company {company}?")
        effect = ledger.revoke(
            company, product, reason=reason, actor=actor or _default_actor(), channel=channel, at=when
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
    catalog = _load_catalog(None)
    when = _at(at)
    with _ledger(catalog) as ledger:
        preview = ledger.impact_of_disconnect(company, connection, when)
        shown = _confirm(preview.as_dict(), yes, as_json, f"Disconnect {connection} of company {company}?")
        effect = ledger.disconnect(
            company, connection, actor=actor or _default_actor(), channel=channel, at=when, reason=reason
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
        raise _fail("not confirmed: stdin is not a terminal; pass --yes to proceed without asking")
    if not typer.confirm(question, default=False, err=as_json):
        raise _fail("not confirmed: nothing was changed", code=1)
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
            "--connection", callback=_optional_connection_id, metavar="ID",
            help="Preview disconnecting this connection instead.", show_default=False,
        ),
    ] = None,
    at: PreviewAtOption = None,
    as_json: JsonOption = False,
) -> None:
    """What revoking a product (or disconnecting a connection) would delete, when, and what it keeps."""
    catalog = _load_catalog(None)
    if (product is None) == (connection is None):
        raise _fail("name a PRODUCT to preview a revocation, or --connection ID to preview a disconnection")
    key = _product_key(catalog, product) if product is not None else None
    when = _at(at)
    with _ledger(catalog) as ledger:
        if key is not None:
            effect = ledger.impact_of_revoke(company, key, when)
        else:
            effect = ledger.impact_of_disconnect(company, connection, when)
    _print_impact(effect.as_dict(), as_json)


def _print_impact(body: dict[str, Any], as_json: bool, *, done: bool = False, err: bool = False) -> None:
    if as_json:
        _print_json(body)
        return
    echo = (lambda line="": typer.echo(line, err=True)) if err else typer.echo
    what = f"disconnecting {body['connection_id']}" if body.get("connection_id") else f"revoking {body['product']!r}"
    echo(f"{'Done: ' if done else 'Impact of '}{what} for company {body['company_id']} at {body.get('at') or ''}")
    if body["delete"]:
        echo("to delete (no remaining consent needs it), after retention:")
        _echo_table(echo, _grouped(body["delete"], ["connection_id", "due_at"]), ["connection_id", "due_at", "data_types"])
    else:
        echo("nothing to delete")
    if body["keep"]:
        echo("kept (another product still needs it):")
        rows = [{**r, "needed_by": ",".join(r["needed_by"])} for r in body["keep"]]
        _echo_table(echo, _grouped(rows, ["connection_id", "needed_by"]), ["connection_id", "needed_by", "data_types"])
    if body["connections_losing_all_consent"]:
        echo(f"connections losing all consent: {', '.join(body['connections_losing_all_consent'])}")


def _grouped(rows: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """Rows sharing `keys` folded into one, their data types listed together (short tables)."""
    groups: dict[tuple, list[str]] = {}
    for row in rows:
        groups.setdefault(tuple(str(row[k]) for k in keys), []).append(row["data_type"])
    return [{**dict(zip(keys, key, strict=True)), "data_types": types} for key, types in groups.items()]


def _echo_table(echo: Callable[..., None], rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max([len(c), *(len(_cell(r.get(c))) for r in rows)]) for c in columns}
    echo("  " + "  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        echo("  " + "  ".join(_cell(row.get(c)).ljust(widths[c]) for c in columns).rstrip())


@app.command("show")
def show(
    company: CompanyArgument,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", callback=_checked_time, metavar="ISO", help="The consents as they stood at this ISO 8601 time.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """A company's consents and what may be pulled (entitlements), now or as of a past time."""
    when = _iso_time(as_of)
    with _ledger() as ledger:
        body = ledger.show(company, when, now=None if when else utcnow())
    if as_json:
        _print_json(body)
        return
    typer.echo(f"company {body['company_id']}" + (f" as of {body['as_of']}" if body.get("as_of") else ""))
    if not body["consents"]:
        typer.echo("no consents")
        return
    _print_table(
        [{**c, "data_types": len(c["data_types"])} for c in body["consents"]],
        ["product", "status", "data_types", "granted_at", "revoked_at", "wording_version", "connections"],
    )
    typer.echo("")
    if not body["entitlements"]:
        typer.echo("no entitlements (nothing may be pulled)")
        return
    typer.echo("entitlements (what may be pulled):")
    rows = [{**e, "products": ",".join(e["products"])} for e in body["entitlements"]]
    _echo_table(typer.echo, _grouped(rows, ["connection_id", "products"]), ["connection_id", "products", "data_types"])


@app.command("history")
def history(company: CompanyArgument, as_json: JsonOption = False) -> None:
    """The ledger of a company's consent events, oldest first."""
    with _ledger() as ledger:
        events = ledger.history(company)
    if as_json:
        _print_json(events)
        return
    if not events:
        typer.echo("no consent events")
        return
    _print_table(
        events,
        ["event_id", "at", "product", "event_type", "data_types", "connection_ids", "wording_version", "actor",
         "channel", "reason"],
    )


# -- legal holds ---------------------------------------------------------------------------------

hold_app = typer.Typer(rich_markup_mode=None, help="Legal holds: block deletion (never consent).", no_args_is_help=True)
app.add_typer(hold_app, name="hold")


@hold_app.command("add")
def hold_add(
    company: CompanyArgument,
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why the data must be kept.", show_default=False)],
    data_type: Annotated[
        str | None,
        typer.Option("--data-type", metavar="KEY", help="Only this Codat data type (default: all the company's data).",
                     show_default=False),
    ] = None,
    actor: ActorOption = None,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Place a legal hold on a company's data (or one data type of it)."""
    if data_type is not None:
        _data_type(data_type)
    if not reason.strip():
        raise _fail("--reason must not be empty")
    when = _at(at)
    with _ledger() as ledger:
        hold_id = ledger.add_hold(company, data_type=data_type, reason=reason, actor=actor or _default_actor(), at=when)
        hold = next((h for h in ledger.holds(company) if h["hold_id"] == hold_id), {"hold_id": hold_id})
    if as_json:
        _print_json(hold)
        return
    typer.echo(f"legal hold {hold_id} placed on company {company}" + (f" ({data_type})" if data_type else ""))


@hold_app.command("release")
def hold_release(
    hold_id: Annotated[int, typer.Argument(callback=_within(1, 2**63 - 1), metavar="HOLD_ID", help="The hold's id.", show_default=False)],
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Release a legal hold: its data may be deleted again once no consent needs it."""
    when = _at(at)
    with _ledger() as ledger:
        ledger.release_hold(hold_id, at=when)
        hold = next(h for h in ledger.holds(include_released=True) if h["hold_id"] == hold_id)
    if as_json:
        _print_json(hold)
        return
    typer.echo(f"legal hold {hold_id} released at {hold['released_at']}")


@hold_app.command("list")
def hold_list(
    company: Annotated[
        str | None,
        typer.Option("--company", callback=_optional_company_id, metavar="ID", help="Only this company id.", show_default=False),
    ] = None,
    include_released: Annotated[bool, typer.Option("--all", help="Include released holds.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Legal holds in force (with --all: released ones too)."""
    with _ledger() as ledger:
        holds = ledger.holds(company, include_released=include_released)
    if as_json:
        _print_json(holds)
        return
    if not holds:
        typer.echo("no legal holds")
        return
    _print_table(holds, ["hold_id", "company_id", "data_type", "reason", "placed_by", "placed_at", "released_at"])


# -- flows and the outbox ------------------------------------------------------------------------

run_app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True,
    help="Run a flow here (ephemeral Prefect, or the server in PREFECT_API_URL).",
)
app.add_typer(run_app, name="run")
notifications_app = typer.Typer(rich_markup_mode=None, help="The notification outbox.", no_args_is_help=True)
app.add_typer(notifications_app, name="notifications")


@run_app.command("expiry-scan")
def run_expiry_scan(
    company: Annotated[
        list[str] | None,
        typer.Option("--company", help="Only this company id (repeatable).", show_default=False),
    ] = None,
    now: NowOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and report; write and send nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Flow connection-expiry-scan: classify connections, warn ahead of expiry, send re-consent links."""
    company_ids = _company_ids(company)
    at = _iso_time(now)
    settings = _settings()
    if settings.codat_api_key is None:
        raise _fail("CONSENT_CODAT_API_KEY is not set (see README: pointing at real Codat)")
    _print_scan(_run_expiry_scan(settings, company_ids, at, dry_run), as_json)


def _run_expiry_scan(
    settings: Settings, company_ids: list[str] | None, now: datetime | None, dry_run: bool
) -> ScanSummary:
    from consent_lifecycle.codat import CodatError
    from consent_lifecycle.db.migrate import upgrade
    from flows.connection_expiry_scan import connection_expiry_scan

    upgrade(settings.database_url)
    try:
        return asyncio.run(connection_expiry_scan(company_ids=company_ids, now=now, dry_run=dry_run))
    except CodatError as exc:
        raise _fail(str(exc), code=1) from None


def _print_scan(summary: ScanSummary, as_json: bool) -> None:
    if as_json:
        _print_json(summary.as_dict())
        return
    typer.echo(
        f"expiry scan as of {summary.as_of}{' (dry run)' if summary.dry_run else ''}: "
        f"{summary.companies} companies, {summary.new} new connections, {summary.changed} changed status"
    )
    _print_table([{"class": k, "connections": v} for k, v in summary.classes.items()], ["class", "connections"])
    typer.echo(
        f"notifications: {summary.notifications_planned} due, {summary.notifications_queued or 0} new"
        + (f", delivery {summary.delivery}" if summary.delivery else "")
    )


def _notification_status(value: str | None) -> str | None:
    from consent_lifecycle.db.models import NOTIFICATION_STATUSES

    if value is not None and value not in NOTIFICATION_STATUSES:
        raise typer.BadParameter(f"unknown status {value!r}: expected one of {', '.join(NOTIFICATION_STATUSES)}")
    return value


@notifications_app.command("list")
def notifications_list(
    status: Annotated[
        str | None,
        typer.Option("--status", callback=_notification_status, metavar="S", help="pending, sending, sent or failed."),
    ] = None,
    company: CompanyFilterOption = None,
    as_json: JsonOption = False,
) -> None:
    """Notifications in the outbox (expiry warnings, expired connections), newest last."""
    from consent_lifecycle.db.engine import make_engine
    from consent_lifecycle.db.migrate import upgrade
    from consent_lifecycle.notify.outbox import list_notifications

    settings = _settings()
    upgrade(settings.database_url)
    rows = list_notifications(make_engine(settings.database_url), status=status, company_id=company)
    if as_json:
        _print_json(rows)
        return
    _print_table(rows, ["id", "kind", "status", "company_id", "connection_id", "threshold_days", "expires_at", "link"])


# -- demo ----------------------------------------------------------------------------------------


@app.command("demo")
def demo(
    companies: Annotated[int, typer.Option(callback=_within(1, 100_000), help="Companies in the sandbox.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of the sandbox world.")] = 7,
) -> None:
    """Start the sandbox in-process, run the expiry scan on it, and print what was found."""
    from codat_sandbox.config import SandboxConfig
    from codat_sandbox.runner import running_sandbox

    catalog = _load_catalog(None)
    key = secrets.token_urlsafe(24)
    config = SandboxConfig(api_key=key, companies=companies, seed=seed)
    with (
        running_sandbox(config) as sandbox,
        _environment(CONSENT_CODAT_BASE_URL=sandbox.base_url, CONSENT_CODAT_API_KEY=key),
    ):
        settings = _settings()
        typer.echo(f"sandbox at {sandbox.base_url}: {companies} companies (seed {seed})")
        typer.echo(f"database: {_safe_url(settings.database_url)}")
        summary = _run_expiry_scan(settings, None, None, dry_run=False)
        _print_scan(summary, as_json=False)
        typer.echo(
            f"notices written to {settings.notify_file} (set CONSENT_NOTIFY_WEBHOOK_URL to POST them instead)"
        )
        typer.echo("")
        granted = _demo_consents(settings, catalog, sandbox)
        typer.echo(f"consents recorded from the companies' Codat products: {granted}")
        from consent_lifecycle.cli_flows import _print_reconciliation, _reconcile

        reconciled = _reconcile(settings, dry_run=False)
    _print_reconciliation(reconciled)
    typer.echo("")
    typer.echo(f"products in catalog {catalog.version}:")
    _print_table(catalog.rows(), ["key", "name", "retention_days", "required"])


def _demo_consents(settings: Settings, catalog: Catalog, sandbox: Any) -> int:
    """Record, once, the consent each sandbox company gave at its first link to the products Codat lists for
    it (a stand-in for the onboarding journey), so the reconciliation has consent to compare against."""
    import httpx

    from consent_lifecycle.db.engine import make_engine
    from consent_lifecycle.ledger import ConsentError, Ledger

    ledger = Ledger(make_engine(settings.database_url), catalog)
    with httpx.Client(base_url=sandbox.base_url, headers=sandbox.auth_header, timeout=30) as http:
        companies = http.get("/companies", params={"pageSize": 5000}).json()["results"]
    granted = 0
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


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    """Entry point: Click reports usage errors with exit 2 itself; input errors found later exit 2 too."""
    import consent_lifecycle.cli_flows  # noqa: F401  (registers its commands on `app`)

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
