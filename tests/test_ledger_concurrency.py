"""Concurrent grants and revokes for one company end in a state some serial order would give."""

from __future__ import annotations

import multiprocessing
import random
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import select

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.db import make_engine
from consent_lifecycle.db.models import Consent, ConsentEvent
from consent_lifecycle.ledger import ConsentError, Ledger
from consent_lifecycle.ledger.replay import events_frame, replay
from consent_lifecycle.snapshot import observe, store
from tests.test_snapshot import ACCOUNTING, BANK, COMPANY, company

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def worker(url: str, seed: int, rounds: int) -> dict[str, int]:
    """Grant, extend and revoke dashboard and lending at random; count what was accepted and refused."""
    ledger = Ledger(make_engine(url), load_catalog())
    rng = random.Random(seed)
    counts = {"accepted": 0, "refused": 0}
    who = {"actor": f"worker-{seed}", "channel": "api"}
    for step in range(rounds):
        at = T0 + timedelta(days=1, seconds=step)  # both workers use the same instants: no order is refused
        product = rng.choice(["dashboard", "lending"])
        action = rng.choice(["grant", "grant", "extend", "revoke"])
        try:
            if action == "grant":
                ledger.grant(COMPANY, product, wording_version="w1", at=at, **who)
            elif action == "extend":
                ledger.extend(COMPANY, product, connections=[BANK], data_types=["banking-transactions"]
                              if product == "lending" else None, at=at, **who)
            else:
                ledger.revoke(COMPANY, product, reason="race", at=at, **who)
            counts["accepted"] += 1
        except ConsentError:
            counts["refused"] += 1
    return counts


def test_racing_writers_leave_a_serial_history(db_url):
    engine = make_engine(db_url)
    store.apply_observation(engine, observe([company()]), T0)
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(worker, [db_url, db_url], [1, 2], [40, 40]))
    assert sum(r["accepted"] for r in results) > 10 and sum(r["refused"] for r in results) > 0

    assert_serial_history(engine)
    ledger = Ledger(engine, load_catalog())
    moment = T0 + timedelta(days=2)
    now = ledger.entitlements(COMPANY, now=moment).drop(columns="products")
    replayed_now = ledger.entitlements(COMPANY, as_of=moment).drop(columns="products")
    pd.testing.assert_frame_equal(now.reset_index(drop=True), replayed_now.reset_index(drop=True))
    assert ACCOUNTING in set(now["connection_id"]) or now.empty


def assert_serial_history(engine) -> None:
    """The ledger's events and current state are what some serial order of the writes gives."""
    with engine.connect() as db:
        events = db.execute(select(ConsentEvent.__table__).order_by(ConsentEvent.id)).mappings().all()
        consents = db.execute(select(Consent.__table__)).mappings().all()
    # 1. every consent's events follow the lifecycle in id order: nothing granted twice, nothing after a revoke
    for product in ("dashboard", "lending"):
        active = False
        for event in (e for e in events if e["product"] == product):
            if event["event_type"] == "granted":
                assert not active, f"{product} granted twice in a row (event {event['id']})"
                active = True
            else:
                assert active, f"{product} {event['event_type']} while not granted (event {event['id']})"
                active = event["event_type"] != "revoked"
    # 2. the current state is exactly the replay of the events: no lost update, nothing half-written
    frame = events_frame([
        (e["id"], e["consent_id"], e["company_id"], e["product"], e["event_type"], e["data_types"],
         e["connection_ids"], e["at"]) for e in events
    ])
    replayed = replay(frame).consents.set_index("product")
    assert len(consents) == len(replayed) == len({e["product"] for e in events})
    for row in consents:
        assert row["status"] == replayed.loc[row["product"], "status"]
        assert row["last_event_id"] == max(e["id"] for e in events if e["consent_id"] == row["id"])
