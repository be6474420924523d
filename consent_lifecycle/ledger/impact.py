"""What revoking a product or disconnecting a connection would delete, and what it keeps. Pure, set-wise.

Both take the company's active consent pairs (product, connection_id, data_type) and drop the ones the
action removes; a (connection, data type) is deleted only when no remaining pair covers it, otherwise it
is kept for the products that still need it. Revoke and disconnect run this same computation for the
preview and for the real thing, so the preview is exactly what happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from consent_lifecycle.clock import iso


@dataclass(frozen=True)
class Impact:
    company_id: str
    product: str | None
    connection_id: str | None
    at: datetime
    delete: list[dict[str, Any]] = field(default_factory=list)
    keep: list[dict[str, Any]] = field(default_factory=list)
    connections_losing_all_consent: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"company_id": self.company_id, "product": self.product}
        if self.connection_id is not None:
            body["connection_id"] = self.connection_id
        body["at"] = iso(self.at)
        body["delete"] = [
            {
                "connection_id": r["connection_id"],
                "data_type": r["data_type"],
                "due_at": iso(r["due_at"]),
                "products": r["products"],
            }
            for r in self.delete
        ]
        body["keep"] = [dict(r) for r in self.keep]
        body["connections_losing_all_consent"] = list(self.connections_losing_all_consent)
        return body


def impact(
    company_id: str,
    pairs: pd.DataFrame,
    removed_mask: pd.Series,
    retention_days: dict[str, int],
    at: datetime,
    *,
    product: str | None = None,
    connection_id: str | None = None,
) -> Impact:
    """The effect of removing `pairs[removed_mask]` (columns product, connection_id, data_type)."""
    removed, remaining = pairs[removed_mask], pairs[~removed_mask]
    key = ["connection_id", "data_type"]
    still = remaining.groupby(key)["product"].agg(lambda s: sorted(set(s))).rename("needed_by").reset_index()
    lost = (
        removed.assign(days=removed["product"].map(retention_days))
        .groupby(key)
        .agg(products=("product", lambda s: sorted(set(s))), days=("days", "max"))
        .reset_index()
        .merge(still, on=key, how="left")
    )
    gone = lost[lost["needed_by"].isna()].copy()
    # kept as long as the longest retention among the products that lose it
    gone["due_at"] = pd.Timestamp(at) + pd.to_timedelta(gone["days"], unit="D")
    kept = lost[lost["needed_by"].notna()]
    losing = sorted(set(removed["connection_id"]) - set(remaining["connection_id"]))
    return Impact(
        company_id=company_id,
        product=product,
        connection_id=connection_id,
        at=at,
        delete=gone.sort_values(key)[[*key, "due_at", "products"]].to_dict("records"),
        keep=kept.sort_values(key)[[*key, "needed_by"]].to_dict("records"),
        connections_losing_all_consent=losing,
    )
