"""The world `benchmarks.api_bench` checks against: N UK companies, their connections and consents, set-wise.

Each company has an Accounting and a Banking connection (Linked) and a Commerce one (Linked or, one in
five, Deauthorized). The Banking connection was authorized 10-120 days before `now`, so under the UK
90-day policy about a quarter of them have expired. Every company but the last `free` ones grants Lending
(its required types on its Linked connections) and every other one Dashboard, through `Ledger.grant_many`;
every 20th revokes Lending again; then ANALYZE. The `free` companies grant Dashboard only: the grant/revoke phase grants
and revokes their Lending consent, one company per operation pair.

`checks` are random Lending questions over the seeded world (a mix of permitted and refused: expired bank
connections, types Lending's grant does not cover, revoked consents, another company's connection).
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from consent_lifecycle.catalog import Catalog
from consent_lifecycle.clock import iso
from consent_lifecycle.ledger import Ledger
from consent_lifecycle.snapshot import observe_dicts, store

PRODUCT = "lending"
#: what the checks ask for: Lending's required types of each source, one optional type, one it never declares
CHECK_TYPES = ["invoices", "balanceSheet", "banking-transactions", "banking-accounts", "accountTransactions",
               "commerce-orders"]
WHO = {"actor": "bench", "channel": "cli", "wording_version": "v1"}
REVOKE_EVERY = 20


@dataclass
class Seeded:
    companies: list[str]
    #: company id -> its connection ids (accounting, banking, commerce)
    connections: dict[str, list[str]]
    #: companies with no Lending consent, for the grant/revoke phase
    free: list[str]
    grants: int
    revokes: int
    seconds: float


def company_body(rng: random.Random, now: datetime) -> dict[str, Any]:
    company_id = str(uuid.uuid4())

    def connection(source_type: str, status: str, age_days: float) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()), "integrationId": str(uuid.uuid4()), "sourceId": str(uuid.uuid4()),
            "platformName": source_type, "linkUrl": "https://link.example", "status": status,
            "created": iso(now - timedelta(days=age_days)), "sourceType": source_type,
        }

    return {
        "id": company_id, "name": f"Company {company_id[:8]}", "redirect": "https://link.example",
        "created": iso(now - timedelta(days=400)), "tags": {"region": "UK"},
        "dataConnections": [
            connection("Accounting", "Linked", rng.uniform(30, 365)),
            connection("Banking", "Linked", rng.uniform(10, 120)),
            connection("Commerce", "Deauthorized" if rng.random() < 0.2 else "Linked", rng.uniform(30, 365)),
        ],
    }


def seed(engine: Engine, catalog: Catalog, companies: int, free: int, now: datetime, seed: int = 1) -> Seeded:
    """Write the snapshot and the consents of `companies` companies (the last `free` without Lending)."""
    started = time.monotonic()
    rng = random.Random(seed)
    bodies = [company_body(rng, now) for _ in range(companies)]
    store.apply_observation(engine, observe_dicts(bodies), now)
    ids = [body["id"] for body in bodies]
    granted_at = now - timedelta(days=5)
    lending = [{"company_id": c, "product": PRODUCT, "at": granted_at, **WHO} for c in ids[: companies - free]]
    dashboard = [{"company_id": c, "product": "dashboard", "at": granted_at, **WHO} for c in ids[1::2] + ids[-free:]]
    ledger = Ledger(engine, catalog)
    refused = ledger.grant_many(lending + list({g["company_id"]: g for g in dashboard}.values()), skip_refused=True)
    revoked = ids[: companies - free : REVOKE_EVERY]
    for company_id in revoked:
        ledger.revoke(company_id, PRODUCT, reason="bench", at=now - timedelta(days=1), actor="bench", channel="cli")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        db.exec_driver_sql("ANALYZE")  # statistics, as a database in service has them
    connections = {body["id"]: [c["id"] for c in body["dataConnections"]] for body in bodies}
    grants = len(lending) + len({g["company_id"] for g in dashboard}) - len(refused)
    return Seeded(ids, connections, ids[-free:] if free else [], grants, len(revoked), time.monotonic() - started)


def random_checks(seeded: Seeded, count: int, seed: int = 2) -> list[dict[str, str]]:
    """`count` Lending checks over the seeded companies; one in 50 names another company's connection."""
    rng = random.Random(seed)
    checks = []
    for _ in range(count):
        company_id = rng.choice(seeded.companies)
        owner = rng.choice(seeded.companies) if rng.random() < 0.02 else company_id
        checks.append(
            {
                "company_id": company_id, "product": PRODUCT,
                "connection_id": rng.choice(seeded.connections[owner]), "data_type": rng.choice(CHECK_TYPES),
            }
        )
    return checks
