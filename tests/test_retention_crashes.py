"""retention-enforcement SIGKILLed at random points: the next run finishes every due item exactly once.

CI runs a few trials; `make soak` runs more (CONSENT_CRASH_TRIALS).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.clock import iso, parse_iso
from consent_lifecycle.db import retention as store
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.migrate import upgrade
from consent_lifecycle.ledger import Ledger
from flows.connection_expiry_scan import connection_expiry_scan
from tests.fixtures_sandbox import SANDBOX_NOW, sandbox_client

pytestmark = pytest.mark.prefect
CONSENT = str(Path(sys.executable).with_name("consent"))
TRIALS = int(os.environ.get("CONSENT_CRASH_TRIALS", "3"))
DELETE_CONNECTION = "DELETE /companies/{companyId}/connections/{connectionId}"
LATER = SANDBOX_NOW + timedelta(days=31)


def prepare(sandbox, url: str) -> dict[str, int]:
    """Lending granted on every Linked accounting connection, then revoked; rows in a local table."""
    upgrade(url)
    asyncio.run(connection_expiry_scan(now=SANDBOX_NOW))
    engine = make_engine(url)
    ledger = Ledger(engine, load_catalog())
    with sandbox_client(sandbox) as http:
        companies = http.get("/companies", params={"pageSize": 100}).json()["results"]
        http.post("/_sandbox/faults", json={"latency_ms": 150}).raise_for_status()  # deletions take time
        http.delete("/_sandbox/requests").raise_for_status()
    with engine.begin() as db:
        db.execute(text("CREATE TABLE store_balance_sheets (company_id TEXT, body TEXT)"))
    for company in companies:
        accounting = [c for c in company["dataConnections"] if c["sourceType"] == "Accounting"
                      and c["status"] == "Linked"]
        if not accounting:
            continue
        linked = parse_iso(accounting[0]["created"])
        ledger.grant(company["id"], "lending", connections=[accounting[0]["id"]], wording_version="v1",
                     actor="c", channel="ui", at=linked)
        ledger.revoke(company["id"], "lending", actor="c", channel="ui", at=SANDBOX_NOW, reason="crash test")
        with engine.begin() as db:
            db.execute(text("INSERT INTO store_balance_sheets VALUES (:c, 'x')"), {"c": company["id"]})
    store.plan(engine, load_catalog(), LATER)
    due = store.due_items(engine, LATER)
    connections = [i for i in store.items(engine, status="planned") if i["scope"] == "codat_connection"]
    return {"due": len(due), "connections": len(connections)}


@pytest.mark.parametrize("trial", range(TRIALS))
def test_killed_at_a_random_point_the_next_run_finishes_each_item_once(flow_env, fresh_sandbox, sqlite_url, trial):
    from prefect.settings import PREFECT_API_URL

    tables = json.dumps({"balanceSheet": "store_balance_sheets"})
    flow_env.setenv("CONSENT_LOCAL_STORE_TABLES", tables)
    expected = prepare(fresh_sandbox, sqlite_url)
    assert expected["due"] > 10 and expected["connections"] >= 3
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    command = [CONSENT, "run", "retention", "--execute", "--now", iso(LATER), "--json"]

    rng = random.Random(f"crash-{trial}")
    delay = rng.uniform(3.5, 9.0)  # start-up takes ~4 s here, then ~0.2 s per connection item
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)

    engine = make_engine(sqlite_url)
    done_before = len(store.items(engine, status="done"))
    print(f"trial {trial}: killed after {delay:.1f} s with {done_before} of {expected['due']} done")
    finished = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr[-2000:]
    summary = json.loads(finished.stdout)
    assert summary["executed_done"] == expected["due"] - done_before

    receipts = store.receipts(engine)
    assert sorted(r["item_id"] for r in receipts) == sorted(i["id"] for i in store.items(engine, status="done"))
    assert len(receipts) == expected["due"] and not store.items(engine, status="planned")
    with sandbox_client(fresh_sandbox) as http:
        deletes = sum(http.get("/_sandbox/requests").json()["by_status"].get(DELETE_CONNECTION, {}).values())
    # one DELETE per connection item, plus at most the one the kill interrupted (answered 404 when resent)
    assert expected["connections"] <= deletes <= expected["connections"] + 1
    with engine.connect() as db:
        assert db.execute(text("SELECT count(*) FROM store_balance_sheets")).scalar() == 0
