"""`consent api serve` (the Consent API and the hosted journey) and `consent api-keys create/list/revoke`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from consent_lifecycle.cli.common import (
    JsonOption,
    command_group,
    fail,
    migrate,
    open_engine,
    prefect_events,
    print_json,
    print_table,
    product_key,
    read_catalog,
    settings,
    within,
)
from consent_lifecycle.clock import utcnow

app = command_group("The Consent API: products and customers reach consent over HTTP.")
keys_app = command_group("Keys of the Consent API (sent as `Authorization: Bearer KEY`).")


def app_from_env() -> Any:
    """The API app on the configured database and catalog (uvicorn's factory: one per worker process).
    With PREFECT_API_URL set, revocations and disconnections are announced to Prefect as the CLI does."""
    from consent_lifecycle.api import create_app
    from consent_lifecycle.db.engine import make_engine

    configured = settings()
    events = prefect_events()
    # no ping per checkout: a round trip on every request of the hot path; a connection the server dropped
    # fails one request and is replaced (SQLAlchemy invalidates the pool on a disconnect), and none is older
    # than pool_recycle
    engine = make_engine(configured.database_url, pool_pre_ping=False, pool_recycle=300)
    return create_app(
        engine, read_catalog(), settings=configured,
        on_change=events and events.emit_ledger_change,
    )


@app.command("serve")
def api_serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(callback=within(0, 65535), help="Port to bind.")] = 8730,
    workers: Annotated[
        int, typer.Option(callback=within(1, 64), help="Worker processes (the machine's cores is a good start).")
    ] = 1,
) -> None:
    """Serve the Consent API (docs at /docs, OpenAPI at /openapi.json) and the hosted consent journey."""
    import uvicorn

    configured = settings()
    migrate(configured.database_url)
    read_catalog()  # a bad catalog exits 2 here, not in every worker
    typer.echo(f"Consent API: http://{host}:{port} (docs at /docs)", err=True)
    uvicorn.run(
        "consent_lifecycle.cli.api:app_from_env", factory=True, host=host, port=port, workers=workers,
        log_level="warning", access_log=False,
    )


@keys_app.command("create")
def keys_create(
    product: Annotated[
        str | None, typer.Option("--product", help="The product the key acts for.", show_default=False)
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="A key for every product, and legal holds.")] = False,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Recorded as the actor of its changes (default: <product>-N).", show_default=False),
    ] = None,
) -> None:
    """Make a key. It is printed once, alone on the last line: only its hash is kept."""
    from consent_lifecycle.api.keys import create_key
    from consent_lifecycle.ledger import ConsentError

    if (product is None) == (not admin):
        raise fail("give --product KEY for a product's key, or --admin for an admin key (one of them)")
    catalog = read_catalog()
    key_product = product_key(catalog, product) if product is not None else None
    with open_engine() as engine:
        try:
            row, key = create_key(engine, catalog, product=key_product, name=name, now=utcnow())
        except ConsentError as exc:
            raise fail(str(exc)) from None
    scope = f"product {row['product']!r}" if row["product"] else "admin"
    typer.echo(f"API key {row['name']!r} ({scope}); it is shown once, store it now:")
    typer.echo(key)


@keys_app.command("list")
def keys_list(
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The API keys (names, scopes, first characters; never the keys)."""
    from consent_lifecycle.api.keys import list_keys

    with open_engine() as engine:
        keys = list_keys(engine, include_revoked=include_revoked)
    if as_json:
        print_json(keys)
        return
    if not keys:
        typer.echo("no API keys")
        return
    print_table(keys, ["name", "scope", "product", "prefix", "created_at", "revoked_at"])


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The key's name.", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """Revoke a key: its next request is refused (401)."""
    from consent_lifecycle.api.keys import revoke_key
    from consent_lifecycle.ledger import ConsentError

    with open_engine() as engine:
        try:
            row = revoke_key(engine, name, now=utcnow())
        except ConsentError as exc:
            raise fail(str(exc)) from None
    if as_json:
        print_json(row)
        return
    typer.echo(f"API key {name!r} revoked at {row['revoked_at']}")
