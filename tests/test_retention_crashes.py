"""retention-enforcement SIGKILLed at random points: the next run finishes every due item exactly once.

CI runs a few trials; `make soak` runs more (CONSENT_CRASH_TRIALS). Helpers: tests/fixtures_crash.py.
"""

from __future__ import annotations

import json
import random
import time

import pytest
from sqlalchemy import text

from consent_lifecycle.clock import iso
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.retention import store
from tests.fixtures_crash import (
    CONSENT,
    DELETE_CONNECTION,
    RETENTION_LATER,
    TRIALS,
    cli_env,
    kill,
    prepare_retention,
    requests_by_status,
    run_to_end,
    start,
)

pytestmark = pytest.mark.prefect
LATER = RETENTION_LATER


@pytest.mark.parametrize("trial", range(TRIALS))
def test_killed_at_a_random_point_the_next_run_finishes_each_item_once(flow_env, fresh_sandbox, sqlite_url, trial):
    tables = json.dumps({"balanceSheet": "store_balance_sheets"})
    flow_env.setenv("CONSENT_LOCAL_STORE_TABLES", tables)
    expected = prepare_retention(fresh_sandbox, sqlite_url)
    assert expected["due"] > 10 and expected["connections"] >= 3
    env = cli_env()
    command = [CONSENT, "run", "retention", "--execute", "--now", iso(LATER), "--json"]

    rng = random.Random(f"crash-{trial}")
    delay = rng.uniform(3.5, 9.0)  # start-up takes ~4 s here, then ~0.2 s per connection item
    process = start(command, env)
    time.sleep(delay)
    kill(process)

    engine = make_engine(sqlite_url)
    done_before = len(store.items(engine, status="done"))
    print(f"trial {trial}: killed after {delay:.1f} s with {done_before} of {expected['due']} done")
    finished = run_to_end(command, env)
    summary = json.loads(finished.stdout)
    assert summary["executed_done"] == expected["due"] - done_before

    receipts = store.receipts(engine)
    assert sorted(r["item_id"] for r in receipts) == sorted(i["id"] for i in store.items(engine, status="done"))
    assert len(receipts) == expected["due"] and not store.items(engine, status="planned")
    deletes = sum(requests_by_status(fresh_sandbox).get(DELETE_CONNECTION, {}).values())
    # one DELETE per connection item, plus at most the one the kill interrupted (answered 404 when resent)
    assert expected["connections"] <= deletes <= expected["connections"] + 1
    with engine.connect() as db:
        assert db.execute(text("SELECT count(*) FROM store_balance_sheets")).scalar() == 0
