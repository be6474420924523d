"""`consent connections attention`: the full list behind the expiry scan's `expiry-attention` table."""

from __future__ import annotations

from typing import Annotated

import typer

from consent_lifecycle.cli.common import (
    JsonOption,
    NowOption,
    command_group,
    iso_time,
    open_engine,
    print_json,
    print_table,
    read_catalog,
)

app = command_group("Connections in the snapshot.")


@app.command("attention")
def connections_attention(
    now: NowOption = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many (default: all).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Expired, expiring and stale connections as of --now, most urgent first (what the expiry scan's
    expiry-attention table shows the head of)."""
    import pandas as pd

    from consent_lifecycle.clock import iso, utcnow
    from consent_lifecycle.expiry import REPORT_COLUMNS, attention_table, classify
    from consent_lifecycle.snapshot.store import connections_for_expiry

    catalog = read_catalog()
    at = iso_time(now) or utcnow()
    with open_engine() as engine:
        connections = connections_for_expiry(engine)
    rows = []
    if not connections.empty:
        table = attention_table(classify(connections, catalog, at), limit or len(connections))
        rows = [
            {k: iso(v) if isinstance(v, pd.Timestamp) else None if pd.isna(v) else v for k, v in row.items()}
            for row in table.to_dict("records")
        ]
    if as_json:
        print_json(rows)
        return
    print_table(rows, REPORT_COLUMNS)
