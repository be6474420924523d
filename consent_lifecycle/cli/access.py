"""`consent access record / check`: products report what they read, and ask before they read."""

from __future__ import annotations

from typing import Annotated

import typer

from consent_lifecycle.cli.common import (
    AtOption,
    JsonOption,
    at_or_now,
    command_group,
    data_type,
    open_engine,
    optional_company_id,
    optional_connection_id,
    print_json,
    product_key,
    read_catalog,
)
from consent_lifecycle.clock import iso, utcnow

app = command_group("Product reads of customer data.")

ProductOption = Annotated[str, typer.Option("--product", help="The product that reads.", show_default=False)]
CompanyIdOption = Annotated[
    str, typer.Option("--company", callback=optional_company_id, help="The company.", show_default=False)
]
DataTypeOption = Annotated[str, typer.Option("--data-type", callback=data_type, help="Codat data type key.")]
ConnectionOption = Annotated[
    str | None, typer.Option("--connection", callback=optional_connection_id, help="The connection read.")
]


@app.command("record")
def access_record(
    product: ProductOption,
    company: CompanyIdOption,
    data_type: DataTypeOption,
    connection: ConnectionOption = None,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record that a product read a data type of a company (reconciliation checks it against consent)."""
    from consent_lifecycle.access import record_access

    catalog = read_catalog()
    key = product_key(catalog, product)
    moment, now = at_or_now(at), utcnow()
    with open_engine() as engine:
        record_id = record_access(engine, catalog, key, company, data_type, moment, now=now, connection_id=connection)
    body = {
        "id": record_id,
        "product": key,
        "company_id": company,
        "connection_id": connection,
        "data_type": data_type,
        "at": iso(moment),
    }
    if as_json:
        print_json(body)
        return
    typer.echo(f"recorded read {record_id}: {key} read {data_type} at {iso(moment)}")


@app.command("check")
def access_check(
    product: ProductOption,
    company: CompanyIdOption,
    data_type: DataTypeOption,
    connection: ConnectionOption = None,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Whether the product's own consent covers the data type at that time (exit 0 yes, 1 no)."""
    from consent_lifecycle.access import is_permitted

    catalog = read_catalog()
    key = product_key(catalog, product)
    moment = at_or_now(at)
    with open_engine() as engine:
        permitted = is_permitted(engine, catalog, key, company, data_type, moment, connection_id=connection)
    body = {"product": key, "company_id": company, "data_type": data_type, "at": iso(moment), "permitted": permitted}
    if as_json:
        print_json(body)
    else:
        typer.echo("permitted" if permitted else "not permitted")
    raise typer.Exit(0 if permitted else 1)
