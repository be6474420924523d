"""The expiry scan and the reconciliation SIGKILLed at random points: the next run finishes the work, and
each effect happens once (one notice per key at the customer's webhook; one pull queued at Codat per
(connection, data type)). Retention's trials are in tests/test_retention_crashes.py.

Each trial draws its kill point from a seeded rng: during start-up and the reads (a time), or right after
the k-th notice reached the webhook / the k-th API request reached the sandbox. CI runs a few trials;
`make soak` runs more (CONSENT_CRASH_TRIALS). Helpers: tests/fixtures_crash.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import threading
from collections import Counter
from datetime import timedelta

import pytest

from consent_lifecycle.clock import iso
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.migrate import upgrade
from consent_lifecycle.notify.outbox import LEASE
from consent_lifecycle.reconcile.store import list_findings
from flows.connection_expiry_scan import connection_expiry_scan
from flows.consent_reconciliation import consent_reconciliation
from tests.fixtures_crash import (
    CONSENT,
    TRIALS,
    clear_requests,
    cli_env,
    grant_reconciliation_consents,
    kill_when,
    requests_total,
    rows,
    run_to_end,
    sandbox_companies,
    set_faults,
    start,
)
from tests.fixtures_sandbox import SANDBOX_NOW, sandbox_client
from tests.fixtures_webhook import WEBHOOK_SECRET

pytestmark = pytest.mark.prefect


# -- connection-expiry-scan ---------------------------------------------------------------------------------

SCAN_AT = SANDBOX_NOW + timedelta(days=60)  # connections expiring, expired and stale
#: an earlier scan, in both twins: the snapshot first saw every connection then (a connection first seen
#: unlinked is expired as of that sighting, so a kill before the first snapshot write would move that moment);
#: 60 days before, so that many notices are still to come at SCAN_AT
SCAN_BEFORE = SANDBOX_NOW
#: the next run: past the outbox's lease, so a notice the kill left claimed but unconfirmed is sent again
SCAN_NEXT = SCAN_AT + LEASE + timedelta(minutes=1)


def outbox(engine) -> list[dict]:
    # id: insertion order; claimed_by: the worker (host, process id); created_at, due_at, claimed_at, sent_at,
    # attempts: which run queued and sent the notice, the killed one or the next (and a notice the kill left
    # unconfirmed is sent twice)
    return rows(engine, "notifications", ["key"], exclude=[
        "id", "claimed_by", "created_at", "due_at", "claimed_at", "sent_at", "attempts",
    ])


def twin(flow_env, webhook, path, runs) -> tuple[list[dict], dict[str, str]]:
    """A fault-free twin in process on database `path`: the earlier scan, then `runs`; its outbox and
    the bodies the customers got from `runs`."""
    url = f"sqlite:///{path}"
    upgrade(url)
    flow_env.setenv("CONSENT_DATABASE_URL", url)
    asyncio.run(connection_expiry_scan(now=SCAN_BEFORE))
    before = {n["key"] for n in outbox(make_engine(url))}
    webhook.received.clear()
    for now in runs:
        asyncio.run(connection_expiry_scan(now=now))
    bodies = {r["key"]: r["body"] for r in webhook.received}
    webhook.received.clear()
    notices = outbox(make_engine(url))
    assert set(bodies) == {n["key"] for n in notices} - before
    return notices, bodies


@pytest.mark.parametrize("trial", range(TRIALS))
def test_scan_killed_at_a_random_point_the_next_run_sends_each_notice_once(
    flow_env, fresh_sandbox, sqlite_url, webhook, tmp_path, trial
):
    flow_env.setenv("CONSENT_NOTIFY_WEBHOOK_URL", webhook.url)
    flow_env.setenv("CONSENT_NOTIFY_WEBHOOK_SECRET", WEBHOOK_SECRET)
    # the fault-free twin, in process on its own database: what the customers should get
    clean, clean_bodies = twin(flow_env, webhook, tmp_path / "clean.db", (SCAN_AT, SCAN_NEXT))
    assert len(clean_bodies) >= 3 and all(n["status"] == "sent" for n in clean)

    flow_env.setenv("CONSENT_DATABASE_URL", sqlite_url)
    asyncio.run(connection_expiry_scan(now=SCAN_BEFORE))
    before = outbox(make_engine(sqlite_url))
    webhook.received.clear()
    set_faults(fresh_sandbox, latency_ms=50)  # the reads take a moment too
    env = cli_env()
    rng = random.Random(f"scan-crash-{trial}")
    k = rng.randint(0, len(clean_bodies))
    # k = 0: a moment in start-up, the reads or the snapshot; else at the k-th notice: before the receiver
    # answers it (sent, unconfirmed) or a few ms after (sends are ~1 ms apart, marks every second)
    delay = rng.uniform(1.5, 6.0) if k == 0 else max(0.0, rng.uniform(-0.01, 0.02))
    process = start([CONSENT, "run", "expiry-scan", "--now", iso(SCAN_AT), "--json"], env)

    def sigkill() -> None:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)

    def after_kth_notice(_received: dict) -> None:  # in the receiver, before it answers
        if len(webhook.received) == k:
            sigkill() if delay == 0 else threading.Timer(delay, sigkill).start()

    if k == 0:
        kill_when(process, lambda: False, timeout=delay)
    else:
        webhook.on_receive = after_kth_notice
        process.wait(timeout=180)
    killed = process.returncode == -signal.SIGKILL
    webhook.on_receive = None
    engine = make_engine(sqlite_url)
    unconfirmed = {n["key"] for n in outbox(engine) if n["status"] == "sending"}
    print(f"trial {trial}: {'killed' if killed else 'not killed (ended first)'} at notice {k} + {delay:.3f} s, "
          f"{len(webhook.received)} of {len(clean_bodies)} sent, {len(unconfirmed)} unconfirmed")

    if outbox(engine) == before:
        # killed before it queued anything: the next run is the first to plan since the earlier scan, at
        # SCAN_NEXT, and a connection that expired in between gets its expiry notice, not the warning it no
        # longer needs
        received = list(webhook.received)
        clean, clean_bodies = twin(flow_env, webhook, tmp_path / "clean-next.db", (SCAN_NEXT,))
        webhook.received[:] = received
        flow_env.setenv("CONSENT_DATABASE_URL", sqlite_url)

    run_to_end([CONSENT, "run", "expiry-scan", "--now", iso(SCAN_NEXT), "--json"], env)
    assert outbox(engine) == clean
    delivered = Counter(r["key"] for r in webhook.received)
    assert set(delivered) == set(clean_bodies)  # every notice reached the customer
    assert all(r["signed"] and r["body"] == clean_bodies[r["key"]] for r in webhook.received)
    # once each; twice (same key, same body) only where the kill came between the send and its record
    twice = {key for key, n in delivered.items() if n > 1}
    assert twice <= unconfirmed and max(delivered.values()) <= 2, delivered


# -- consent-reconciliation ----------------------------------------------------------------------------------

RECONCILE_AT = SANDBOX_NOW + timedelta(hours=1)
#: the next run, once the pulls queued by the killed one have finished (the sandbox's take 60 s): a pull
#: queued twice would now be accepted, and seen
RECONCILE_NEXT = RECONCILE_AT + timedelta(minutes=2)


def queued_at_codat(sandbox) -> Counter:
    """(company, connection, data type) of each pull queued at the sandbox since RECONCILE_AT."""
    queued: Counter = Counter()
    with sandbox_client(sandbox) as http:
        for company in sandbox_companies(sandbox):
            pulls = http.get(
                f"/companies/{company['id']}/data/history",
                params={"pageSize": 5000, "query": f"requested>={iso(RECONCILE_AT)}"},
            ).json()["results"]
            queued.update((p["companyId"], p["connectionId"], p["dataType"]) for p in pulls)
    return queued


def set_clock(sandbox, now) -> None:
    with sandbox_client(sandbox) as http:
        http.post("/_sandbox/clock", json={"now": iso(now)}).raise_for_status()


@pytest.mark.parametrize("trial", range(TRIALS))
def test_reconciliation_killed_at_a_random_point_the_next_run_queues_each_pull_once(
    flow_env, fresh_sandbox, sqlite_url, trial
):
    asyncio.run(connection_expiry_scan(now=SANDBOX_NOW))
    engine = make_engine(sqlite_url)
    grant_reconciliation_consents(fresh_sandbox, engine)
    set_clock(fresh_sandbox, RECONCILE_AT)
    set_faults(fresh_sandbox, latency_ms=40)  # so the run's requests spread over a few seconds
    clear_requests(fresh_sandbox)
    planned = asyncio.run(consent_reconciliation(now=RECONCILE_AT, dry_run=True))
    reads = requests_total(fresh_sandbox)  # a dry run reads what the real run reads, and changes nothing
    clear_requests(fresh_sandbox)
    assert planned.pulls_to_queue >= 5 and planned.sync_settings_to_set >= 5, planned

    env = cli_env()
    rng = random.Random(f"reconcile-crash-{trial}")
    k = rng.randint(0, reads + planned.pulls_to_queue + planned.sync_settings_to_set)
    delay = rng.uniform(1.0, 5.0)
    process = start([CONSENT, "run", "reconcile", "--now", iso(RECONCILE_AT), "--json"], env)
    if k == 0:  # during start-up, or wherever the run has got to by then
        kill_when(process, lambda: False, timeout=delay)
    else:  # right after the k-th request reached Codat: a read, a sync settings write or a pull queued
        kill_when(process, lambda: requests_total(fresh_sandbox) >= k)
    killed = process.returncode == -signal.SIGKILL
    queued_before = sum(queued_at_codat(fresh_sandbox).values())
    print(f"trial {trial}: {'killed' if killed else 'not killed (ended first)'} at request {k} "
          f"(or {delay:.1f} s), {queued_before} of {planned.pulls_to_queue} pulls queued")

    set_clock(fresh_sandbox, RECONCILE_NEXT)
    finished = run_to_end([CONSENT, "run", "reconcile", "--now", iso(RECONCILE_NEXT), "--json"], env)
    summary = json.loads(finished.stdout)

    queued = queued_at_codat(fresh_sandbox)
    assert all(n == 1 for n in queued.values()), [key for key, n in queued.items() if n > 1]
    assert sum(queued.values()) == planned.pulls_to_queue
    assert summary["pulls_queued"] == planned.pulls_to_queue - queued_before
    with engine.connect() as db:  # exactly the pulls found missing were queued
        missing = {tuple(f["key"].split(":")[1:]) for f in list_findings(db, kind="missing_pull")}
    assert missing == set(queued)
    # nothing lost: the sync settings at Codat are exactly the entitled types, and no pull is left to queue
    # (every company read: the incremental rerun read those the killed run had not finished, and no other)
    after = asyncio.run(consent_reconciliation(now=RECONCILE_NEXT, dry_run=True, full=True))
    assert after.sync_settings_to_set == 0 and after.pulls_to_queue == 0, after
