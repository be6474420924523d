"""Each flow through Prefect with the sandbox injecting API faults ends exactly as the fault-free run does.

The faults (FAULTS): 10% 5xx, 5% 429 with `Retry-After: 1`, 1% requests that hang past the client's
timeout (then answer 504), 20 ms of latency on every request, drawn from a fixed seed. Every flow runs
twice from the same start (a freshly reset sandbox and a fresh database): once fault-free, once faulted;
the outcomes are compared row for row, with only the columns that legitimately differ between two runs
left out, by name. The expiry scan's twin is `test_with_429s_and_5xx_the_scan_ends_as_without_faults`
in tests/test_flow_expiry_scan.py.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from consent_lifecycle.clock import iso
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.migrate import upgrade
from flows.connection_expiry_scan import connection_expiry_scan
from flows.consent_reconciliation import consent_reconciliation
from flows.retention_enforcement import retention_enforcement
from tests.fixtures_crash import (
    DELETE_CONNECTION,
    QUEUE_PULL,
    RETENTION_LATER,
    clear_requests,
    grant_reconciliation_consents,
    prepare_retention,
    requests_by_status,
    rows,
    sandbox_companies,
    set_faults,
)
from tests.fixtures_sandbox import SANDBOX_NOW, reset_sandbox, sandbox_client

pytestmark = pytest.mark.prefect

#: seed 49 draws 5xx, 5xx, -, 429, 429, -, timeout: any flow making 3 requests or more meets all three
FAULTS = {
    "rate_5xx": 0.10,
    "rate_429": 0.05,
    "rate_timeout": 0.01,
    "latency_ms": 20,
    "retry_after_seconds": 1,
    "timeout_seconds": 4.0,
    "seed": 49,
}
#: the client gives up on a request after this many seconds (and retries it): before the sandbox answers
CLIENT_TIMEOUT_SECONDS = "3"
RECONCILE_AT = SANDBOX_NOW + timedelta(hours=1)


def inject_faults(sandbox, monkeypatch) -> None:
    """FAULTS on from now, the request counters cleared, and a client timeout shorter than a hung request."""
    monkeypatch.setenv("CONSENT_CODAT_TIMEOUT_SECONDS", CLIENT_TIMEOUT_SECONDS)
    set_faults(sandbox, **FAULTS)
    clear_requests(sandbox)


def faults_answered(sandbox) -> Counter:
    """How many API requests the sandbox answered with each fault status (429, 5xx, 504 after a hang)."""
    answered: Counter = Counter()
    for by_status in requests_by_status(sandbox).values():
        answered.update({code: n for code, n in by_status.items() if code >= 400})
    return answered


def assert_every_fault_met(sandbox) -> None:
    answered = faults_answered(sandbox)
    print(f"faults answered: {dict(sorted(answered.items()))}")
    assert answered[429] >= 1 and answered[500] + answered[503] >= 1 and answered[504] >= 1, answered


def fresh_database(monkeypatch, tmp_path: Path, name: str) -> str:
    url = f"sqlite:///{tmp_path / name}"
    upgrade(url)
    monkeypatch.setenv("CONSENT_DATABASE_URL", url)
    return url


# -- consent-reconciliation ---------------------------------------------------------------------------


def reconciliation_world(sandbox, url: str):
    """From the seeded sandbox: the snapshot and the consents in the database at `url`, the sandbox's clock
    at RECONCILE_AT; the database's engine."""
    asyncio.run(connection_expiry_scan(now=SANDBOX_NOW))
    engine = make_engine(url)
    grant_reconciliation_consents(sandbox, engine)
    with sandbox_client(sandbox) as http:
        http.post("/_sandbox/clock", json={"now": iso(RECONCILE_AT)}).raise_for_status()
    return engine


def reconciliation_outcome(sandbox, engine) -> dict:
    """The database's findings, pull records, cursors and deletion items; the sandbox's sync settings and
    the pulls queued at it."""
    outcome = {
        "findings": rows(engine, "findings", ["key"], exclude=["id"]),  # id: insertion order
        "pull_records": rows(engine, "pull_operations", ["id"]),
        "cursors": rows(engine, "reconcile_cursors", ["company_id"]),
        "deletion_items": rows(engine, "deletion_items", ["key"], exclude=["id"]),  # id: insertion order
        "sync_settings": {},
        "queued_pulls": {},
    }
    with sandbox_client(sandbox) as http:
        for company in sorted(c["id"] for c in sandbox_companies(sandbox)):
            settings = http.get(f"/companies/{company}/syncSettings").json()["settings"]
            outcome["sync_settings"][company] = sorted(settings, key=lambda s: s["dataType"])
            pulls = http.get(
                f"/companies/{company}/data/history",
                params={"pageSize": 5000, "query": f"requested>={iso(RECONCILE_AT)}"},
            ).json()["results"]
            # id: the sandbox draws a new uuid for each pull queued
            outcome["queued_pulls"][company] = sorted(
                ({k: v for k, v in p.items() if k != "id"} for p in pulls),
                key=lambda p: (p["connectionId"], p["dataType"]),
            )
    return outcome


def test_with_api_faults_reconciliation_ends_as_without(flow_env, fresh_sandbox, sqlite_url, tmp_path):
    engine = reconciliation_world(fresh_sandbox, sqlite_url)
    clean_summary = asyncio.run(consent_reconciliation(now=RECONCILE_AT))
    clean = reconciliation_outcome(fresh_sandbox, engine)
    queued = sum(len(p) for p in clean["queued_pulls"].values())
    assert queued >= 5 and clean_summary.sync_settings_set >= 5, clean_summary
    assert {f["kind"] for f in clean["findings"]} >= {
        "unconsented_sync_setting", "unconsented_pull", "missing_pull"
    } and clean["deletion_items"], "the fault-free run found too little to compare"

    reset_sandbox(fresh_sandbox)
    url = fresh_database(flow_env, tmp_path, "faulted.db")
    engine = reconciliation_world(fresh_sandbox, url)
    inject_faults(fresh_sandbox, flow_env)
    faulted_summary = asyncio.run(consent_reconciliation(now=RECONCILE_AT))
    assert_every_fault_met(fresh_sandbox)
    queue_answers = requests_by_status(fresh_sandbox)[QUEUE_PULL]
    print(f"pull queueing answered while faulted: {queue_answers}")
    assert any(code >= 500 for code in queue_answers), "no queueing met a 5xx or timeout: the resend untested"
    set_faults(fresh_sandbox)  # read the outcome without faults

    # the same outcome; only the requests differ: the faulted run resent what failed
    assert faulted_summary.codat_requests > clean_summary.codat_requests
    assert replace(faulted_summary, codat_requests=0, codat_requests_by_reason={}) == replace(
        clean_summary, codat_requests=0, codat_requests_by_reason={}
    )
    faulted = reconciliation_outcome(fresh_sandbox, engine)
    for part in clean:
        assert faulted[part] == clean[part], part


# -- retention-enforcement --------------------------------------------------------------------------------


def retention_outcome(sandbox, engine) -> dict:
    with engine.connect() as db:
        receipts = db.execute(text(
            "SELECT i.key AS item_key, r.* FROM deletion_receipts r JOIN deletion_items i ON i.id = r.item_id "
            "ORDER BY i.key"
        )).mappings().all()
        local_rows = db.execute(text("SELECT count(*) FROM store_balance_sheets")).scalar()
    deletes = requests_by_status(sandbox).get(DELETE_CONNECTION, {})
    return {
        # id: insertion order; claimed_by: the worker (host, process id) that executed the item
        "deletion_items": rows(engine, "deletion_items", ["key"], exclude=["id", "claimed_by"]),
        # id, item_id: insertion order (the item is named by its key instead)
        "receipts": [{k: v for k, v in r.items() if k not in ("id", "item_id")} for r in receipts],
        "local_rows": local_rows,
        # DELETEs Codat acted on (200) or found done already (404): once per connection item
        "deletes_done": deletes.get(200, 0) + deletes.get(404, 0),
        "connections_at_codat": sorted(
            (c["id"], n["id"], n["status"]) for c in sandbox_companies(sandbox) for n in c["dataConnections"]
        ),
    }


def run_retention() -> tuple[str, dict]:
    state = asyncio.run(retention_enforcement(now=RETENTION_LATER, return_state=True))
    return state.name, state.result(raise_on_failure=True)


def test_with_api_faults_retention_ends_as_without(flow_env, fresh_sandbox, sqlite_url, tmp_path):
    flow_env.setenv("CONSENT_LOCAL_STORE_TABLES", json.dumps({"balanceSheet": "store_balance_sheets"}))
    expected = prepare_retention(fresh_sandbox, sqlite_url)
    assert expected["due"] > 10 and expected["connections"] >= 3
    set_faults(fresh_sandbox)
    clean_state = run_retention()
    clean = retention_outcome(fresh_sandbox, make_engine(sqlite_url))
    assert clean["deletes_done"] == expected["connections"] and len(clean["receipts"]) == expected["due"]

    reset_sandbox(fresh_sandbox)
    url = fresh_database(flow_env, tmp_path, "faulted.db")
    prepare_retention(fresh_sandbox, url)
    inject_faults(fresh_sandbox, flow_env)
    faulted_state = run_retention()
    assert_every_fault_met(fresh_sandbox)
    deletes = requests_by_status(fresh_sandbox).get(DELETE_CONNECTION, {})
    set_faults(fresh_sandbox)

    assert faulted_state == clean_state
    faulted = retention_outcome(fresh_sandbox, make_engine(url))
    for part in clean:
        assert faulted[part] == clean[part], part
    print(f"DELETEs answered while faulted: {deletes}")
