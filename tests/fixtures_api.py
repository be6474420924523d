"""The Consent API served for real: uvicorn on loopback (a thread of the test process), over a migrated
database (`db_url`: SQLite and PostgreSQL), with a snapshot of a few companies and keys of each kind.

- `serve_app(app)`: a context manager serving an ASGI app on a free loopback port; yields its base URL.
- `api`: an `Api` (base URL, engine, ledger, keys by name, `client(key)` for httpx over HTTP, `counts()` of
  the tables a write would touch, to prove a refusal wrote nothing).

The snapshot (times relative to the real clock, as the API decides at its own `now`): company ACME with an
accounting connection and a UK bank linked 30 days ago; company GLOBEX with accounting, a UK bank linked
100 days ago (its 90-day Open Banking consent has expired) and a Deauthorized bank.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, func, select

from consent_lifecycle.api import create_app
from consent_lifecycle.api.keys import create_key
from consent_lifecycle.catalog import Catalog, load_catalog
from consent_lifecycle.clock import utcnow
from consent_lifecycle.codat.models import Company
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.models import AccessRecord, ApiKey, Consent, ConsentEvent, IdempotencyKey, LegalHold
from consent_lifecycle.ledger import Ledger
from consent_lifecycle.snapshot import observe, store

ACME = "a0000000-0000-4000-8000-000000000001"
ACME_BOOKS = "a0000000-0000-4000-8000-0000000000a1"
ACME_BANK = "a0000000-0000-4000-8000-0000000000b1"
GLOBEX = "b0000000-0000-4000-8000-000000000002"
GLOBEX_BOOKS = "b0000000-0000-4000-8000-0000000000a2"
GLOBEX_OLD_BANK = "b0000000-0000-4000-8000-0000000000b2"
GLOBEX_GONE_BANK = "b0000000-0000-4000-8000-0000000000c2"
#: a connection of ACME that appears later (S3: the customer connects another package)
ACME_SECOND_BANK = "a0000000-0000-4000-8000-0000000000b3"
UNKNOWN = "f0000000-0000-4000-8000-00000000000f"
COUNTED = (ConsentEvent, Consent, AccessRecord, IdempotencyKey, LegalHold, ApiKey)


def connection(company_id: str, connection_id: str, source_type: str, status: str, created: datetime) -> dict:
    return {
        "id": connection_id, "integrationId": "44444444-4444-4444-8444-444444444444",
        "sourceId": "55555555-5555-4555-8555-555555555555",
        "platformName": {"Accounting": "Xero", "Banking": "Open Banking UK"}.get(source_type, "Shopify"),
        "linkUrl": f"https://link-api.codat.io/companies/{company_id}/connections/{connection_id}/start",
        "status": status, "created": created.isoformat(), "sourceType": source_type,
    }


def company(company_id: str, name: str, connections: list[dict], region: str = "UK") -> Company:
    return Company.model_validate(
        {
            "id": company_id, "name": name, "redirect": f"https://link.codat.io/company/{company_id}",
            "created": "2026-01-01T00:00:00Z", "tags": {"region": region}, "dataConnections": connections,
        }
    )


def world(now: datetime, *, second_bank: bool = False) -> list[Company]:
    acme = [
        connection(ACME, ACME_BOOKS, "Accounting", "Linked", now - timedelta(days=200)),
        connection(ACME, ACME_BANK, "Banking", "Linked", now - timedelta(days=30)),
    ]
    if second_bank:
        acme.append(connection(ACME, ACME_SECOND_BANK, "Banking", "Linked", now - timedelta(hours=1)))
    globex = [
        connection(GLOBEX, GLOBEX_BOOKS, "Accounting", "Linked", now - timedelta(days=200)),
        connection(GLOBEX, GLOBEX_OLD_BANK, "Banking", "Linked", now - timedelta(days=100)),
        connection(GLOBEX, GLOBEX_GONE_BANK, "Banking", "Deauthorized", now - timedelta(days=20)),
    ]
    return [company(ACME, "Acme Ltd", acme), company(GLOBEX, "Globex plc", globex)]


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """`app` served by uvicorn on a free loopback port, in a thread; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Api:
    url: str
    engine: Engine
    catalog: Catalog
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.engine, self.catalog)

    def client(self, key: str | None = "admin") -> httpx.Client:
        """An HTTP client sending the key named `key` (None: no key)."""
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def add_key(self, name: str, product: str | None) -> str:
        _, key = create_key(self.engine, self.catalog, product=product, name=name, now=utcnow())
        self.keys[name] = key
        return key

    def observe(self, companies: list[Company]) -> None:
        store.apply_observation(self.engine, observe(companies), utcnow())

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as db:
            return {m.__tablename__: db.execute(select(func.count()).select_from(m)).scalar_one() for m in COUNTED}


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    engine = make_engine(db_url)
    catalog = load_catalog()
    handle = Api("", engine, catalog)
    handle.observe(world(utcnow()))
    handle.add_key("admin", None)
    handle.add_key("lending-app", "lending")
    handle.add_key("dashboard-app", "dashboard")
    try:
        with serve_app(create_app(engine, catalog)) as url:
            handle.url = url
            yield handle
    finally:
        engine.dispose()
