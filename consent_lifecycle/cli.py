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
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from consent_lifecycle.catalog import Catalog, CatalogError, load_catalog
from consent_lifecycle.clock import parse_iso
from consent_lifecycle.settings import Settings

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
    try:
        return Settings()
    except ValidationError as exc:  # names the variable and the value
        raise _fail(f"bad CONSENT_ setting: {exc}") from None


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
) -> None:
    """Serve a Codat-compatible API over HTTP, seeded deterministically."""
    from consent_lifecycle.sandbox.config import SandboxConfig
    from consent_lifecycle.sandbox.runner import serve

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


def _run_sync(settings: Settings, company_ids: list[str] | None, now: datetime | None) -> dict[str, Any]:
    from consent_lifecycle.codat import CodatError
    from consent_lifecycle.db.migrate import upgrade
    from flows.snapshot_sync import snapshot_sync

    upgrade(settings.database_url)
    try:
        return asyncio.run(snapshot_sync(company_ids=company_ids, now=now))
    except CodatError as exc:
        raise _fail(str(exc), code=1) from None


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    rows = summary["connections"]
    if as_json:
        _print_json(rows)
        return
    typer.echo(
        f"{summary['companies']} companies, {summary['connection_count']} connections "
        f"({summary['new']} new, {summary['changed']} changed status, {summary['vanished']} gone) "
        f"as of {summary['as_of']}"
    )
    _print_table(rows, ["source_type", "status", "connections"])


# -- demo ----------------------------------------------------------------------------------------


@app.command("demo")
def demo(
    companies: Annotated[int, typer.Option(callback=_within(1, 100_000), help="Companies in the sandbox.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of the sandbox world.")] = 7,
) -> None:
    """Start the sandbox in-process, sync it into the database, and print what was found."""
    from consent_lifecycle.sandbox.config import SandboxConfig
    from consent_lifecycle.sandbox.runner import running_sandbox

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
        summary = _run_sync(settings, None, None)
    _print_summary(summary, as_json=False)
    typer.echo("")
    typer.echo(f"products in catalog {catalog.version}:")
    _print_table(catalog.rows(), ["key", "name", "retention_days", "required"])


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
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
