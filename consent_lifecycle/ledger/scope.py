"""What a grant or an extension covers: data types and connections, resolved and checked. Pure functions.

A consent's scope is a set of data types and a set of connections; the (connection, data type) pairs it
covers are those whose source types match (an accounting connection carries `invoices`, a banking one
`banking-transactions`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import pandas as pd

from consent_lifecycle.catalog import Catalog, CatalogError, Product
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from consent_lifecycle.ledger.errors import ConflictError, ConsentError, NotFoundError
from consent_lifecycle.ledger.refusals import no_linked_connection

CHANNELS = ("ui", "api", "cli")


@dataclass(frozen=True)
class Scope:
    data_types: frozenset[str]
    connections: frozenset[str]


class ConnectionRow(NamedTuple):
    """One snapshot connection, as the checks below read it."""

    id: str
    source_type: str
    status: str
    deleted_at: datetime | None


#: a company's snapshot connections: its rows as a frame (columns id, source_type, status, deleted_at and
#: any others), or as plain rows (`consent_lifecycle.ledger.reads.company_connections`, the write path)
Connections = pd.DataFrame | Sequence[ConnectionRow]


def connection_rows(connections: Connections) -> list[ConnectionRow]:
    """`connections` as plain rows (a frame's deleted_at NaT becomes None)."""
    if not isinstance(connections, pd.DataFrame):
        return list(connections)
    return [
        ConnectionRow(i, source, status, None if pd.isna(deleted) else deleted)
        for i, source, status, deleted in zip(
            connections["id"], connections["source_type"], connections["status"], connections["deleted_at"],
            strict=True,
        )
    ]


def product_of(catalog: Catalog, key: str) -> Product:
    try:
        return catalog.product(key)
    except CatalogError as exc:
        raise NotFoundError(str(exc)) from None


def check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise ConsentError(f"unknown channel {channel!r}: expected one of {', '.join(CHANNELS)}")


def check_data_type_key(key: str) -> str:
    """`key` if it is a Codat data type; else an error naming it, with the closest key as a hint."""
    if key not in DATA_TYPE_SOURCE:
        close = difflib.get_close_matches(key, list(DATA_TYPE_SOURCE), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConsentError(f"unknown Codat data type {key!r}{hint}")
    return key


def check_data_types(product: Product, data_types: Iterable[str]) -> frozenset[str]:
    wanted = frozenset(check_data_type_key(key) for key in data_types)
    undeclared = sorted(wanted - product.data_types)
    if undeclared:
        raise ConsentError(
            f"product {product.key!r} does not declare data type {undeclared[0]!r} "
            f"(it declares: {', '.join(sorted(product.data_types))})"
        )
    return wanted


def check_known_connection(company_id: str, connection_id: str, connections: Connections) -> None:
    """`connection_id` must be one of the company's connections in the snapshot (`connections`: its rows)."""
    if connection_id not in {row.id for row in connection_rows(connections)}:
        raise NotFoundError(
            f"connection {connection_id} is not a connection of company {company_id} in the snapshot "
            "(run `consent sync` if it was linked recently)"
        )


def check_connections(
    company_id: str, connection_ids: Iterable[str], data_types: frozenset[str], connections: Connections
) -> frozenset[str]:
    """Each named connection must be the company's, still listed, and carry at least one of `data_types`.

    `connections`: the company's snapshot rows (id, source_type, status, deleted_at).
    """
    wanted = frozenset(connection_ids)
    rows = connection_rows(connections)
    known = {row.id: row for row in rows}
    sources = {DATA_TYPE_SOURCE[d] for d in data_types}
    for connection_id in sorted(wanted):
        check_known_connection(company_id, connection_id, rows)
        row = known[connection_id]
        if row.deleted_at is not None:
            raise ConsentError(f"connection {connection_id} was deleted at Codat")
        if row.source_type not in sources:
            raise ConsentError(
                f"connection {connection_id} is a {row.source_type} connection; none of the data types "
                f"{', '.join(sorted(data_types))} comes from {row.source_type}"
            )
    return wanted


def default_connections(data_types: frozenset[str], connections: Connections) -> frozenset[str]:
    """The company's Linked, listed connections whose source type carries some of `data_types`."""
    sources = {DATA_TYPE_SOURCE[d] for d in data_types}
    return frozenset(
        row.id
        for row in connection_rows(connections)
        if row.status == "Linked" and row.deleted_at is None and row.source_type in sources
    )


def resolve_grant(
    product: Product,
    company_id: str,
    connections: Connections,
    data_types: Iterable[str] | None,
    connection_ids: Iterable[str] | None,
) -> Scope:
    """A grant's scope: the product's required types by default, the matching Linked connections by default."""
    types = check_data_types(product, data_types) if data_types else product.required
    if connection_ids:
        chosen = check_connections(company_id, connection_ids, types, connections)
    else:
        chosen = default_connections(types, connections)
        if not chosen:
            sources = "/".join(sorted({DATA_TYPE_SOURCE[d] for d in types}))
            raise ConflictError(no_linked_connection(company_id, sources, product.key))
    return Scope(types, chosen)


def resolve_extension(
    product: Product,
    company_id: str,
    current: Scope,
    connections: Connections,
    data_types: Iterable[str] | None,
    connection_ids: Iterable[str] | None,
) -> Scope:
    """What an extension adds to `current` (only the new part); refused when it adds nothing."""
    types = check_data_types(product, data_types or ())
    combined_types = current.data_types | types
    chosen = check_connections(company_id, connection_ids or (), combined_types, connections)
    added = Scope(types - current.data_types, chosen - current.connections)
    if not added.data_types and not added.connections:
        raise ConflictError(
            f"extending {product.key!r} for company {company_id} adds nothing: "
            "name a new --data-type or --connection"
        )
    return added


def scope_pairs(data_types: pd.DataFrame, connections: pd.DataFrame, snapshot: pd.DataFrame) -> pd.DataFrame:
    """(consent, connection, data type) pairs a scope covers: one join, source types matched.

    data_types: consent_id, data_type; connections: consent_id, connection_id (plus any consent columns,
    e.g. company_id and product, carried on `connections`); snapshot: id, source_type.
    """
    kinds = pd.DataFrame(
        {"data_type": list(DATA_TYPE_SOURCE), "source_type": list(DATA_TYPE_SOURCE.values())}
    )
    typed = data_types.merge(kinds, on="data_type")
    linked = connections.merge(
        snapshot[["id", "source_type"]].rename(columns={"id": "connection_id"}), on="connection_id"
    )
    return linked.merge(typed, on=["consent_id", "source_type"]).drop(columns="source_type")
