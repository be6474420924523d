"""Read models of the ledger: consents as a user sees them, and entitlements (what may be pulled)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from consent_lifecycle.catalog import Catalog
from consent_lifecycle.clock import iso
from consent_lifecycle.expiry import INPUT_COLUMNS, classify
from consent_lifecycle.ledger.replay import ConsentState
from consent_lifecycle.ledger.scope import scope_pairs

ENTITLEMENT_COLUMNS = ["company_id", "connection_id", "data_type", "products"]


@dataclass(frozen=True)
class ConsentView:
    consent_id: str
    company_id: str
    product: str
    status: str
    data_types: tuple[str, ...]
    connections: tuple[str, ...]
    granted_at: datetime
    revoked_at: datetime | None
    updated_at: datetime
    wording_version: str | None = None
    actor: str | None = None
    channel: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "consent_id": self.consent_id,
            "product": self.product,
            "status": self.status,
            "data_types": list(self.data_types),
            "connections": list(self.connections),
            "granted_at": iso(self.granted_at),
            "revoked_at": iso(self.revoked_at),
            "updated_at": iso(self.updated_at),
            "wording_version": self.wording_version,
            "actor": self.actor,
            "channel": self.channel,
        }

    @classmethod
    def from_state(cls, state: ConsentState) -> list[ConsentView]:
        types = state.data_types.groupby("consent_id")["data_type"].agg(lambda s: tuple(sorted(s)))
        conns = state.connections.groupby("consent_id")["connection_id"].agg(lambda s: tuple(sorted(s)))
        consents = state.consents.sort_values(["company_id", "product"])
        extra = {"wording_version", "actor", "channel"} & set(consents.columns)
        return [
            cls(
                consent_id=row["consent_id"],
                company_id=row["company_id"],
                product=row["product"],
                status=row["status"],
                data_types=types.get(row["consent_id"], ()),
                connections=conns.get(row["consent_id"], ()),
                granted_at=_time(row["granted_at"]),
                revoked_at=_time(row["revoked_at"]),
                updated_at=_time(row["updated_at"]),
                **{key: row[key] for key in extra},
            )
            for row in consents.to_dict("records")
        ]


def usable_entitlements(
    state: ConsentState, snapshot: pd.DataFrame, catalog: Catalog | None = None, at: datetime | None = None
) -> pd.DataFrame:
    """Union over active consents of their (connection, data type) pairs, on connections that are Linked
    and not deleted in the snapshot and, when `at` is given, not expired at `at`: joins and one group-by."""
    active = state.consents[state.consents["status"] == "active"][["consent_id", "company_id", "product"]]
    connections = state.connections.merge(active, on="consent_id")
    pairs = scope_pairs(state.data_types, connections, usable_connections(snapshot, catalog, at))
    return entitlements_of(pairs)


def usable_connections(
    snapshot: pd.DataFrame, catalog: Catalog | None = None, at: datetime | None = None
) -> pd.DataFrame:
    """The snapshot's connections that are Linked and not deleted and, when `at` (and `catalog`) is given,
    not expired at `at`."""
    usable = snapshot[(snapshot["status"] == "Linked") & snapshot["deleted_at"].isna()]
    if at is not None and catalog is not None and not usable.empty:
        classes = classify(usable[INPUT_COLUMNS], catalog, at)
        usable = usable[usable["id"].isin(classes.loc[classes["expiry_class"] != "expired", "id"])]
    return usable


def entitlements_of(pairs: pd.DataFrame) -> pd.DataFrame:
    """ENTITLEMENT_COLUMNS from (company_id, connection_id, data_type, product) pairs: one row per
    (company, connection, data type), sorted, with the sorted tuple of its distinct products.

    Vectorized: the keys and products become sorted integer codes (`pd.factorize`), each key's products
    one bit set (an OR per key, over words of 62 products), and each distinct bit set one tuple, made once.
    """
    keys = ENTITLEMENT_COLUMNS[:3]
    pairs = pairs.dropna(subset=keys)
    if pairs.empty:
        return pd.DataFrame(columns=ENTITLEMENT_COLUMNS)
    coded = [pd.factorize(pairs[column], sort=True) for column in keys]
    product, products = pd.factorize(pairs["product"], sort=True)
    key = np.ravel_multi_index([codes for codes, _ in coded], [len(names) for _, names in coded])
    order = np.argsort(key, kind="stable")
    firsts = np.flatnonzero(np.diff(key[order], prepend=-1) != 0)
    words = [
        np.bitwise_or.reduceat(np.where(product[order] // 62 == word, 1 << (product[order] % 62), 0), firsts)
        for word in range(max(1, -(-len(products) // 62)))
    ]
    sets, distinct = pd.factorize(pd.MultiIndex.from_arrays(words)) if len(words) > 1 else pd.factorize(words[0])
    tuples = np.empty(len(distinct), dtype=object)
    tuples[:] = [_products_of(bits, products) for bits in distinct]
    rows = order[firsts]
    return pd.DataFrame(
        {
            **{column: names.take(codes[rows]) for column, (codes, names) in zip(keys, coded, strict=True)},
            "products": tuples[sets],
        }
    )


def _products_of(bits: int | tuple[int, ...], products: pd.Index) -> tuple[str, ...]:
    """The products whose bits are set in `bits` (one int, or one per word of 62 products), sorted."""
    words = bits if isinstance(bits, tuple) else (bits,)
    return tuple(
        products[word * 62 + bit] for word, value in enumerate(words) for bit in range(62) if value >> bit & 1
    )


def entitlement_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {"connection_id": r["connection_id"], "data_type": r["data_type"], "products": list(r["products"])}
        for r in frame.to_dict("records")
    ]


def _time(value: Any) -> datetime | None:
    if value is None or pd.isna(value):
        return None
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value
