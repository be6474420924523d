"""What revoking a product or disconnecting a connection would delete, and what it keeps. Pure.

Both take the company's active consent pairs (product, connection_id, data_type) and drop the ones the
action removes; a (connection, data type) is deleted only when no remaining pair covers it, otherwise it
is kept for the products that still need it. Revoke and disconnect run this same computation for the
preview and for the real thing, so the preview is exactly what happens.

Plain Python over one company's pairs (a few connections, at most ~40 data types, a few products): at
that size pandas' fixed cost per operation is most of the time, and a write pays for this on every call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
    pairs: Iterable[tuple[str, str, str]],
    removed: Callable[[tuple[str, str, str]], bool],
    retention_days: dict[str, int],
    at: datetime,
    *,
    product: str | None = None,
    connection_id: str | None = None,
) -> Impact:
    """The effect of removing the (product, connection_id, data_type) `pairs` for which `removed` is true."""
    lost: dict[tuple[str, str], set[str]] = {}
    still: dict[tuple[str, str], set[str]] = {}
    for pair in pairs:
        (lost if removed(pair) else still).setdefault((pair[1], pair[2]), set()).add(pair[0])
    delete: list[dict[str, Any]] = []
    keep: list[dict[str, Any]] = []
    for key in sorted(lost):
        products = sorted(lost[key])
        if key in still:
            keep.append({"connection_id": key[0], "data_type": key[1], "needed_by": sorted(still[key])})
            continue
        # kept as long as the longest retention among the products that lose it
        days = [retention_days[p] for p in products if p in retention_days]
        due_at = pd.Timestamp(at) + pd.Timedelta(days=max(days)) if days else pd.NaT
        delete.append({"connection_id": key[0], "data_type": key[1], "due_at": due_at, "products": products})
    losing = sorted({c for c, _ in lost} - {c for c, _ in still})
    return Impact(
        company_id=company_id,
        product=product,
        connection_id=connection_id,
        at=at,
        delete=delete,
        keep=keep,
        connections_losing_all_consent=losing,
    )
