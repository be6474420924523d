"""The integrations the sandbox knows: Codat's real 4-letter platform keys, names and source types."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

_NAMESPACE = uuid.UUID("5b0c1c4e-3c1a-4a57-9a55-0c0da7c0de00")


@dataclass(frozen=True)
class Platform:
    key: str
    name: str
    source_type: str
    integration_id: str = field(init=False)
    source_id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "integration_id", str(uuid.uuid5(_NAMESPACE, f"integration:{self.key}")))
        object.__setattr__(self, "source_id", str(uuid.uuid5(_NAMESPACE, f"source:{self.key}")))


PLATFORMS: tuple[Platform, ...] = (
    Platform("gbol", "Xero", "Accounting"),
    Platform("qhyg", "QuickBooks Online", "Accounting"),
    Platform("tgff", "Sage Business Cloud Accounting", "Accounting"),
    Platform("fbrh", "FreeAgent", "Accounting"),
    Platform("hbql", "Sage 50", "Accounting"),
    Platform("rwuv", "Zoho Books", "Accounting"),
    Platform("akxx", "Oracle NetSuite", "Accounting"),
    Platform("suuo", "Plaid", "Banking"),
    Platform("upvr", "TrueLayer", "Banking"),
    Platform("dfxm", "Basiq", "Banking"),
    Platform("fztf", "Shopify", "Commerce"),
    Platform("exgd", "Stripe", "Commerce"),
    Platform("zsth", "Square", "Commerce"),
    Platform("gvom", "PayPal", "Commerce"),
)
BY_KEY: dict[str, Platform] = {p.key: p for p in PLATFORMS}

#: banks a banking connection's `sourceId` points at (TrueLayer/Plaid source ids are banks)
BANK_SOURCE_IDS: tuple[str, ...] = tuple(
    str(uuid.uuid5(_NAMESPACE, f"bank:{name}"))
    for name in (
        "Barclays",
        "HSBC",
        "Lloyds",
        "NatWest",
        "Santander",
        "Monzo",
        "Starling",
        "ING",
        "BNP Paribas",
    )
)


def by_source_type(source_type: str) -> tuple[Platform, ...]:
    return tuple(p for p in PLATFORMS if p.source_type == source_type)
