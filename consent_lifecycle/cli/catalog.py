"""`consent catalog show`: the product catalog."""

from __future__ import annotations

import typer

from consent_lifecycle.cli.common import (
    CatalogOption,
    JsonOption,
    command_group,
    print_json,
    print_table,
    read_catalog,
)

app = command_group("The product catalog.")


@app.command("show")
def catalog_show(as_json: JsonOption = False, catalog: CatalogOption = None) -> None:
    """Products, their data types and retention."""
    loaded = read_catalog(catalog)
    rows = loaded.rows()
    if as_json:
        print_json(rows)
        return
    typer.echo(f"catalog version {loaded.version}")
    print_table(rows, ["key", "name", "retention_days", "required", "optional"])
    typer.echo("\ndata types, as the consent journey shows them")
    words = [{"data_type": w.key, "name": w.name, "description": w.description} for w in loaded.words.values()]
    print_table(words, ["data_type", "name", "description"])
