"""Retention on PostgreSQL with concurrent workers and racing grants: each due item executed exactly once,
and a grant that commits before an execution always wins."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.codat.models import Company
from consent_lifecycle.db import make_engine
from consent_lifecycle.db.engine import lock_company
from consent_lifecycle.ledger import Ledger
from consent_lifecycle.retention import store
from consent_lifecycle.retention.execute import execute
from consent_lifecycle.snapshot import observe
from consent_lifecycle.snapshot import store as snapshots

pytestmark = pytest.mark.postgres
CATALOG = load_catalog()
T0 = datetime(2026, 6, 1, tzinfo=UTC)
LATER = T0 + timedelta(days=40)  # past Lending's 30 days of retention


class NoLocalStore:
    def purge(self, db, company_id: str, data_type: str) -> int:
        return 0


def seed(url: str, companies: int) -> list[tuple[str, str, str]]:
    """Companies whose Lending consent (accounting + bank) was revoked a day after it was granted."""
    engine = make_engine(url)
    made = []
    for _ in range(companies):
        company, acct, bank = (str(uuid.uuid4()) for _ in range(3))
        connections = [
            {"id": cid, "integrationId": str(uuid.uuid4()), "sourceId": str(uuid.uuid4()), "platformName": source,
             "linkUrl": "https://link", "status": "Linked", "created": "2026-05-01T00:00:00Z", "sourceType": source}
            for cid, source in ((acct, "Accounting"), (bank, "Banking"))
        ]
        body = {"id": company, "name": "Racer", "redirect": "https://link", "dataConnections": connections}
        snapshots.apply_observation(engine, observe([Company.model_validate(body)]), T0)
        made.append((company, acct, bank))
    ledger = Ledger(engine, CATALOG)
    for company, acct, bank in made:
        ledger.grant(company, "lending", connections=[acct, bank], wording_version="v1", actor="c", channel="ui",
                     at=T0)
        ledger.revoke(company, "lending", actor="c", channel="ui", at=T0 + timedelta(days=1), reason="race")
    store.plan(engine, CATALOG, LATER)
    return made


def worker(url: str, seed_: int) -> dict[str, int]:
    """Execute every due item, in its own random order; count outcomes and Codat DELETE calls made."""
    engine = make_engine(url)
    calls = 0

    async def delete_connection(company_id: str, connection_id: str) -> int:
        nonlocal calls
        calls += 1
        return 200

    ids = store.due_items(engine, LATER)
    random.Random(seed_).shuffle(ids)
    counts: dict[str, int] = {"codat_calls": 0}
    for item in ids:
        outcome = asyncio.run(execute(engine, CATALOG, item, LATER, delete_connection=delete_connection,
                                            purger=NoLocalStore(), worker=f"w{seed_}"))
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    counts["codat_calls"] = calls
    return counts


def test_four_workers_execute_every_due_item_exactly_once(postgres_url):
    seed(postgres_url, 25)
    engine = make_engine(postgres_url)
    due = store.due_items(engine, LATER)
    connections = [i for i in store.items(engine, status="planned") if i["scope"] == "codat_connection"]
    assert len(due) > 100 and len(connections) == 50
    with ProcessPoolExecutor(max_workers=4, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(worker, [postgres_url] * 4, range(4)))
    assert sum(r.get("done", 0) for r in results) == len(due)  # each item by exactly one worker
    assert sum(r["codat_calls"] for r in results) == len(connections)  # one DELETE per connection item
    assert all(set(r) <= {"done", "skipped", "codat_calls"} for r in results)
    receipts = store.receipts(engine)
    assert sorted(r["item_id"] for r in receipts) == sorted(due)
    assert len(store.items(engine, status="done")) == len(due)


def waiting_for_locks(engine) -> int:
    with engine.connect() as db:
        return db.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).scalar()


def until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the lock queue"
        time.sleep(0.01)


@pytest.mark.parametrize("first", ["grant", "deletion"])
def test_whichever_commits_first_wins_every_time(postgres_url, first):
    engine = make_engine(postgres_url)
    ledger = Ledger(engine, CATALOG)
    trials = seed(postgres_url, 5)
    calls: list[str] = []

    async def delete_connection(company_id: str, connection_id: str) -> int:
        calls.append(connection_id)
        return 200

    for company, acct, _ in trials:
        (item,) = [i for i in store.items(engine, company, "planned") if i["data_type"] == "balanceSheet"]
        results: dict[str, object] = {}

        def grant(company=company, acct=acct, results=results):
            results["grant"] = ledger.grant(company, "lending", connections=[acct], wording_version="v2",
                                            actor="c", channel="ui", at=LATER - timedelta(hours=1))

        def delete(item=item, results=results):
            results["deletion"] = asyncio.run(execute(
                engine, CATALOG, item["id"], LATER, delete_connection=delete_connection, purger=NoLocalStore(),
                worker="racer",
            ))

        threads = {"grant": threading.Thread(target=grant), "deletion": threading.Thread(target=delete)}
        second = "deletion" if first == "grant" else "grant"
        with engine.begin() as holder:  # hold the company's lock, queue both behind it in a known order
            lock_company(holder, company)
            threads[first].start()
            until(lambda: waiting_for_locks(engine) == 1)
            threads[second].start()
            until(lambda: waiting_for_locks(engine) == 2)
        for thread in threads.values():
            thread.join(timeout=30)
        outcome = results["deletion"]
        assert "grant" in results  # the grant is never refused or lost
        if first == "grant":
            assert outcome.status == "cancelled" and not store.receipts(engine, company)
        else:
            assert outcome.status == "done" and len(store.receipts(engine, company)) == 1
    assert calls == []  # only local-store items raced here


@pytest.mark.prefect
def test_four_retention_runs_at_once_delete_each_connection_once(flow_env, fresh_sandbox, postgres_url):
    """Four `consent run retention --execute` processes on one PostgreSQL database and the sandbox."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from prefect.settings import PREFECT_API_URL

    from consent_lifecycle.clock import iso
    from tests.fixtures_crash import DELETE_CONNECTION
    from tests.fixtures_crash import RETENTION_LATER as LATER
    from tests.fixtures_crash import prepare_retention as prepare
    from tests.fixtures_sandbox import sandbox_client

    flow_env.setenv("CONSENT_DATABASE_URL", postgres_url)
    flow_env.setenv("CONSENT_LOCAL_STORE_TABLES", json.dumps({"balanceSheet": "store_balance_sheets"}))
    expected = prepare(fresh_sandbox, postgres_url)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    command = [str(Path(sys.executable).with_name("consent")), "run", "retention", "--execute", "--now", iso(LATER),
               "--json"]
    runs = [subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err[-1500:] for _, err in results]
    summaries = [json.loads(out) for out, _ in results]
    assert sum(s["executed_done"] for s in summaries) == expected["due"]
    engine = make_engine(postgres_url)
    assert sorted(r["item_id"] for r in store.receipts(engine)) == sorted(
        i["id"] for i in store.items(engine, status="done")
    )
    assert len(store.receipts(engine)) == expected["due"]
    with sandbox_client(fresh_sandbox) as http:
        deletes = http.get("/_sandbox/requests").json()["by_status"].get(DELETE_CONNECTION, {})
    assert deletes == {"200": expected["connections"]}  # each connection deleted once, none twice (no 404)
