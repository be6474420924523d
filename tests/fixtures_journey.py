"""The hosted consent journey on a real server: companies seeded into the snapshot, the app served by uvicorn
on loopback, and signed links to its pages.

- `journey`: a `JourneyWorld` on `db_url` (SQLite and PostgreSQL): five companies (below), the app served in
  a thread, `link(...)` to make page URLs, `history(...)` for the ledger's proof.

The companies (UK, so Open Banking consent is reconfirmed every 90 days), seen at Codat a day ago:
- NEW: Xero and a fresh Barclays connection, no consent yet (S1).
- EXISTING: Xero and Barclays; Business dashboard granted on the CLI a day ago (S2, S3, S4, S5).
- EXPIRED: Xero, Barclays authorized 120 days ago (Linked, past its 90 days) and HSBC Deauthorized;
  Lending origination granted a day ago (S6).
- OTHER: another business, for links opened on the wrong company.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from consent_lifecycle.api import create_app
from consent_lifecycle.api.journey.links import make_link
from consent_lifecycle.catalog import Catalog, load_catalog
from consent_lifecycle.clock import utcnow
from consent_lifecycle.codat.models import Company
from consent_lifecycle.db import make_engine
from consent_lifecycle.ledger import Ledger
from consent_lifecycle.snapshot import observe, store
from tests.fixtures_api import company, connection, serve_app

SECRET = b"journey-test-secret-0123456789abcdef"
NEW = "d0000000-0000-4000-8000-000000000001"
EXISTING = "d0000000-0000-4000-8000-000000000002"
EXPIRED = "d0000000-0000-4000-8000-000000000003"
OTHER = "d0000000-0000-4000-8000-000000000004"
NAMES = {NEW: "Newco Bakery Ltd", EXISTING: "Existing Joinery Ltd", EXPIRED: "Lapsed Florist Ltd",
         OTHER: "Other Garage Ltd"}


def connection_id(company_id: str, n: int) -> str:
    return f"c0000000-0000-4000-8000-{company_id[-2:]}{n:010d}"


XERO = {c: connection_id(c, 1) for c in NAMES}
BARCLAYS = {c: connection_id(c, 2) for c in NAMES}
HSBC = {c: connection_id(c, 3) for c in NAMES}


def codat_company(company_id: str, connections: list[tuple[str, str, str, str, datetime]]) -> Company:
    """A Codat company as listed, with (id, platform, source type, status, created) connections."""
    listed = [
        {**connection(company_id, cid, source_type, status, created), "platformName": platform}
        for cid, platform, source_type, status, created in connections
    ]
    return company(company_id, NAMES[company_id], listed)


def companies(now: datetime) -> dict[str, list[tuple[str, str, str, str, datetime]]]:
    xero = ("Xero", "Accounting", "Linked", now - timedelta(days=30))
    return {
        NEW: [(XERO[NEW], *xero), (BARCLAYS[NEW], "Barclays", "Banking", "Linked", now - timedelta(days=10))],
        EXISTING: [(XERO[EXISTING], *xero),
                   (BARCLAYS[EXISTING], "Barclays", "Banking", "Linked", now - timedelta(days=10))],
        EXPIRED: [(XERO[EXPIRED], *xero),
                  (BARCLAYS[EXPIRED], "Barclays", "Banking", "Linked", now - timedelta(days=120)),
                  (HSBC[EXPIRED], "HSBC", "Banking", "Deauthorized", now - timedelta(days=150))],
        OTHER: [(XERO[OTHER], *xero)],
    }


@dataclass
class JourneyWorld:
    base_url: str
    engine: Engine
    catalog: Catalog
    ledger: Ledger
    seeded_at: datetime
    connections: dict[str, list[tuple[str, str, str, str, datetime]]] = field(repr=False)

    def link(self, company_id: str, product: str | None = None, *, on: str | None = None,
             now: datetime | None = None, ttl: timedelta = timedelta(days=7)) -> str:
        """The URL of a page of company `on` (default: the link's company) with a link for `company_id`:
        its confirm page with a `product`, else its manage page."""
        token, _ = make_link(SECRET, company_id, product, now or utcnow(), ttl)
        page = f"{self.base_url}/journey/companies/{on or company_id}"
        return f"{page}/consents/{product}?token={token}" if product else f"{page}?token={token}"

    def history(self, company_id: str) -> list[dict[str, Any]]:
        return self.ledger.history(company_id)

    def ui_events(self, company_id: str) -> list[tuple[str, str]]:
        """(product, event type) of the company's events recorded through the journey."""
        return [(e["product"], e["event_type"]) for e in self.history(company_id) if e["channel"] == "ui"]

    def link_connection(self, company_id: str, connection: tuple[str, str, str, str, datetime]) -> None:
        """Codat now lists another Linked connection of the company (S3 done at Codat's Link)."""
        self.connections[company_id].append(connection)
        observation = observe([codat_company(company_id, self.connections[company_id])])
        store.apply_observation(self.engine, observation, utcnow())


@pytest.fixture
def journey(db_url: str) -> Iterator[JourneyWorld]:
    engine = make_engine(db_url)
    catalog = load_catalog()
    ledger = Ledger(engine, catalog)
    seeded_at = utcnow() - timedelta(days=1)
    listed = companies(seeded_at)
    store.apply_observation(engine, observe([codat_company(c, conns) for c, conns in listed.items()]), seeded_at)
    who = {"wording_version": f"catalog-{catalog.version}", "actor": "seed", "channel": "cli", "at": seeded_at}
    ledger.grant(EXISTING, "dashboard", **who)
    ledger.grant(EXPIRED, "lending", **who)
    try:
        with serve_app(create_app(engine, catalog, secret=SECRET)) as base_url:
            yield JourneyWorld(base_url, engine, catalog, ledger, seeded_at, listed)
    finally:
        engine.dispose()
