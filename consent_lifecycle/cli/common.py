"""What every command group of `consent` shares: option types, argument parsers, the one way to fail, the
settings, the database (migrated once per process), the flow runner and the printers.

Parsers raise `typer.BadParameter` naming the bad value (Click then exits 2 with usage); `fail` is for what
is found later. Nothing here imports Prefect, the flows or the tasks at import time: `consent --help` stays
fast and the core stays usable without them.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from consent_lifecycle.catalog import Catalog, CatalogError, load_catalog
from consent_lifecycle.clock import parse_iso, utcnow
from consent_lifecycle.settings import Settings

INPUT_ERROR = 2


def command_group(help: str) -> typer.Typer:
    """A sub-command group (`consent GROUP ...`); plain errors: the bad value is never wrapped or cut by a box."""
    return typer.Typer(rich_markup_mode=None, help=help, no_args_is_help=True)


def top_level_commands() -> typer.Typer:
    """Commands a module adds at the top (`consent grant`, `consent sync`...): registered without a name."""
    return typer.Typer(rich_markup_mode=None)


def fail(message: str, code: int = INPUT_ERROR) -> typer.Exit:
    """Print `error: message` on stderr; raise the result to exit with `code` (2: the user's input)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


# -- argument parsers: each names the bad value --------------------------------------------------


def iso_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def checked_time(value: str | None) -> str | None:
    """Callback: refuse a bad ISO time while parsing (naming the option); the text is kept as given."""
    iso_time(value)
    return value


def at_or_now(value: str | None) -> datetime:
    """`--at`: the given ISO time, or now (the edge is where the clock is read)."""
    return iso_time(value) or utcnow()


def within(low: int, high: int | None = None) -> Callable[[int | None], int | None]:
    """A callback refusing integers outside [low, high], naming the value (Typer's own message does not)."""

    def check(value: int | None) -> int | None:
        if value is not None and (value < low or (high is not None and value > high)):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise typer.BadParameter(f"{value} is not in the range {bound}")
        return value

    return check


#: a database id (positive, and within a signed 64-bit integer)
#: ids of rows in INTEGER columns (legal holds, deletion receipts): PostgreSQL refuses a larger number outright
ROW_ID = within(1, 2**31 - 1)


def row_id(value: str) -> int:
    """Parser (`parser=`) of a database id given as text: an integer ROW_ID accepts, or exit 2 naming it."""
    try:
        number = int(value)
    except ValueError:
        raise typer.BadParameter(f"not an id (a positive integer): {value!r}") from None
    ROW_ID(number)
    return number


def _uuid(what: str, value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise typer.BadParameter(f"not a {what} id (uuid): {value!r}") from None


def company_id(value: str) -> str:
    return _uuid("company", value)


def company_ids(values: list[str] | None) -> list[str] | None:
    return [company_id(v) for v in values] if values else None


def optional_company_id(value: str | None) -> str | None:
    return None if value is None else company_id(value)


def connection_id(value: str) -> str:
    return _uuid("connection", value)


def connection_ids(values: list[str] | None) -> list[str] | None:
    return [connection_id(v) for v in values] if values else None


def optional_connection_id(value: str | None) -> str | None:
    return None if value is None else connection_id(value)


def product_key(catalog: Catalog, key: str) -> str:
    try:
        return catalog.product(key).key
    except CatalogError as exc:
        raise fail(str(exc)) from None


def data_type(key: str) -> str:
    """A Codat data type key (callback or plain call); an unknown one exits 2 naming it."""
    from consent_lifecycle.ledger import ConsentError
    from consent_lifecycle.ledger.scope import check_data_type_key

    try:
        return check_data_type_key(key)
    except ConsentError as exc:
        raise fail(str(exc)) from None


def default_actor() -> str:
    import getpass

    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        user = "unknown"
    return f"cli:{user}"


# -- option types --------------------------------------------------------------------------------

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (snake_case keys, ISO 8601 UTC times).")]
NowOption = Annotated[
    str | None,
    typer.Option("--now", help="Decide as of this ISO 8601 time (default: the current time).", show_default=False),
]
AtOption = Annotated[
    str | None,
    typer.Option(
        "--at", callback=checked_time, metavar="ISO", show_default=False,
        help="When it happened, ISO 8601 (default: now).",
    ),
]
CatalogOption = Annotated[
    Path | None,
    typer.Option("--catalog", help="Product catalog TOML (default: $CONSENT_CATALOG or the shipped one)."),
]
#: a flow's scope (parsed with `company_ids` in the command)
CompaniesOption = Annotated[
    list[str] | None, typer.Option("--company", help="Only this company id (repeatable).", show_default=False)
]
#: a list command's filter (one company)
CompanyFilterOption = Annotated[
    str | None,
    typer.Option("--company", callback=optional_company_id, metavar="ID", help="Only this company."),
]
CompanyArgument = Annotated[
    str, typer.Argument(callback=company_id, metavar="COMPANY", help="Company id (uuid).", show_default=False)
]
ActorOption = Annotated[
    str | None,
    typer.Option("--actor", metavar="A", help="Who recorded it (default: cli:<OS user>).", show_default=False),
]


# -- settings, catalog, database -----------------------------------------------------------------


def settings() -> Settings:
    """The CONSENT_ settings; a bad one exits 2 naming the variable and the value."""
    from pydantic_settings import SettingsError

    try:
        loaded = Settings()
    except ValidationError as exc:  # names the variable and the value
        raise fail(f"bad CONSENT_ setting: {exc}") from None
    except SettingsError as exc:  # a complex value (JSON) that does not parse: names the field and why
        raise fail(f"bad CONSENT_ setting: {exc}: {exc.__cause__}") from None
    _check_database_url(loaded.database_url)
    return loaded


def codat_settings() -> Settings:
    """The settings of a command that talks to Codat: without an API key it exits 2 before anything runs."""
    loaded = settings()
    if loaded.codat_api_key is None:
        raise fail("CONSENT_CODAT_API_KEY is not set (see README: pointing at real Codat)")
    return loaded


def _check_database_url(url: str) -> None:
    """Refuse a CONSENT_DATABASE_URL that is not SQLite or PostgreSQL before anything opens it (the message
    shows the URL with its password hidden)."""
    from consent_lifecycle.db.engine import normalize_url

    try:
        backend = normalize_url(url).get_backend_name()
    except ValueError as exc:
        raise fail(f"bad CONSENT_DATABASE_URL: {exc}") from None
    if backend not in ("sqlite", "postgresql"):
        raise fail(
            f"bad CONSENT_DATABASE_URL: unsupported database {safe_url(url)}: "
            "use sqlite:///path/to/file.db or postgresql://..."
        )


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def read_catalog(path: Path | None = None) -> Catalog:
    """The catalog at `path` (default: the configured one); a bad file exits 2 naming it and the value."""
    try:
        return load_catalog(path or settings().catalog)
    except CatalogError as exc:
        raise fail(str(exc)) from None


_migrated: set[str] = set()


def migrate(url: str) -> None:
    """Bring the database at `url` to the head revision, once per process (a command may open it often)."""
    if url not in _migrated:
        from consent_lifecycle.db.migrate import upgrade

        upgrade(url)
        _migrated.add(url)


@contextmanager
def open_engine(configured: Settings | None = None) -> Iterator[Any]:
    """An engine on the configured database, migrated first; disposed afterwards."""
    from consent_lifecycle.db.engine import make_engine

    url = (configured or settings()).database_url
    migrate(url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def open_ledger(catalog: Catalog | None = None) -> Iterator[Any]:
    """The ledger on the configured database (migrated first); a ConsentError exits 2 with its message, the
    transaction rolled back. Revocations and disconnections are announced to a Prefect server, if set."""
    from consent_lifecycle.ledger import ConsentError, Ledger

    events = prefect_events()
    with open_engine() as engine:
        try:
            yield Ledger(engine, catalog or read_catalog(), on_change=events and events.emit_ledger_change)
        except ConsentError as exc:
            raise fail(str(exc)) from None
        finally:
            if events:
                events.flush()


def prefect_events() -> Any:
    """`tasks.events` when PREFECT_API_URL names a Prefect server (revocations and disconnections are then
    announced to it as events, for its automations), else None: Prefect is not even imported."""
    if not os.environ.get("PREFECT_API_URL"):
        return None
    import tasks.events

    return tasks.events


# -- flows ---------------------------------------------------------------------------------------

SNAPSHOT_SYNC = "flows.snapshot_sync:snapshot_sync"
EXPIRY_SCAN = "flows.connection_expiry_scan:connection_expiry_scan"
RECONCILIATION = "flows.consent_reconciliation:consent_reconciliation"
RETENTION = "flows.retention_enforcement:retention_enforcement"
CODAT_EVENTS = "flows.codat_events:codat_events"


def run_flow(flow: str, *, needs_codat: bool = True, **parameters: Any) -> Any:
    """Run the flow `flows.module:function` here (ephemeral Prefect, or the server in PREFECT_API_URL) and
    return what it returns. First the settings (with `needs_codat`, the API key), then the migration; the
    flow module is imported only then, as importing it reads the settings. Codat failing exits 1."""
    from consent_lifecycle.codat import CodatError

    configured = codat_settings() if needs_codat else settings()
    migrate(configured.database_url)
    module, _, name = flow.partition(":")
    function = getattr(importlib.import_module(module), name)
    try:
        return asyncio.run(function(**parameters))
    except CodatError as exc:
        raise fail(str(exc), code=1) from None


# -- output --------------------------------------------------------------------------------------


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def print_table(rows: list[dict[str, Any]], columns: list[str], *, indent: int = 0, err: bool = False) -> None:
    """Rows as aligned columns under a header (`indent` spaces in front; on stderr with `err`)."""
    widths = {c: max([len(c), *(len(cell(r.get(c))) for r in rows)]) for c in columns}
    lines = [columns, *([cell(row.get(c)) for c in columns] for row in rows)]
    for line in lines:
        text = "  ".join(value.ljust(widths[c]) for c, value in zip(columns, line, strict=True))
        typer.echo((" " * indent + text).rstrip(), err=err)


def cell(value: Any) -> str:
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(sorted(map(str, value)))
    return "" if value is None else str(value)
