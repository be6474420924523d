"""The inbox's claim, apply and done, without Prefect: concurrent processors on PostgreSQL (and SQLite)
take each event once; effects are idempotent; unknown types are done and counted as ignored."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from consent_lifecycle.db.bulk import insert_new
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.models import CodatEvent, ReadObservation, ReconcileMark
from consent_lifecycle.events import inbox
from consent_lifecycle.events.parse import parse
from consent_lifecycle.events.store import apply
from consent_lifecycle.events.summary import EventsSummary

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def events(n: int, kind: str = "read.completed") -> list[dict]:
    rows = []
    for i in range(n):
        at = NOW - timedelta(seconds=i)
        body = {"id": str(i), "eventType": kind, "generatedDate": at.isoformat(),
                "payload": {"referenceCompany": {"id": f"c{i % 7}"},
                            "dataTypes": [{"connectionId": f"conn-{i % 13}", "dataType": "invoices",
                                           "status": "Complete" if i % 5 else "FetchError", "recordsModified": i}]}}
        rows.append({"id": f"e{i}", "event_type": kind, "company_id": f"c{i % 7}", "generated_at": at,
                     "received_at": NOW, "body": json.dumps(body)})
    return rows


def drain(engine, worker: str, limit: int = 250) -> int:
    processed = 0
    while ids := inbox.claim(engine, NOW, worker=worker, limit=limit):
        with engine.begin() as db:
            claimed = inbox.leased(db, ids, worker)
            apply(db, parse(claimed), NOW)
            processed += inbox.mark_done(db, claimed["id"].tolist(), worker, NOW)
    return processed


def count(engine, model, *where) -> int:
    with engine.connect() as db:
        return db.scalar(select(func.count()).select_from(model).where(*where))


@pytest.mark.postgres
def test_concurrent_processors_take_each_event_once(postgres_url):
    engine = make_engine(postgres_url)
    with engine.begin() as db:
        insert_new(db, CodatEvent.__table__, events(3000), key="id")
    done: dict[str, int] = {}
    threads = [threading.Thread(target=lambda w=w: done.__setitem__(w, drain(engine, w))) for w in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(done.values()) == 3000
    assert count(engine, CodatEvent, CodatEvent.status == "done") == 3000
    assert count(engine, ReadObservation) == 3000
    assert count(engine, ReconcileMark) == 7  # unknown connections and failed pulls marked, once per company
    engine.dispose()


def test_effects_applied_twice_change_nothing_and_unknown_types_are_ignored(engine):
    rows = events(50) + events(3, kind="client.rateLimit.reached")[:1]
    rows[-1]["id"] = "other"
    with engine.begin() as db:
        insert_new(db, CodatEvent.__table__, rows, key="id")
    ids = inbox.claim(engine, NOW, worker="w", limit=100)
    with engine.begin() as db:
        parsed = parse(inbox.leased(db, ids, "w"))
        apply(db, parsed, NOW)
        apply(db, parsed, NOW)  # a replay of the same batch
        inbox.mark_done(db, ids, "w", NOW)
    assert count(engine, ReadObservation) == 50
    summary = EventsSummary.of("now", [{"processed": parsed.counts}])
    assert summary.ignored == 1 and summary.events == 51
    assert "| read.completed | 50 |" in summary.markdown()


def test_a_lease_that_ran_out_is_taken_again_and_the_last_attempt_fails(engine):
    with engine.begin() as db:
        insert_new(db, CodatEvent.__table__, events(3), key="id")
    assert len(inbox.claim(engine, NOW, worker="dead", limit=10)) == 3
    assert inbox.claim(engine, NOW, worker="other", limit=10) == []  # leased
    later = NOW + inbox.LEASE
    ids = inbox.claim(engine, later, worker="other", limit=10)
    assert len(ids) == 3
    retried, failed = inbox.mark_attempt_failed(engine, ids, "other", "boom", later, max_attempts=1)
    assert (retried, failed) == (0, ["c0", "c1", "c2"])
    assert count(engine, CodatEvent, CodatEvent.status == "failed") == 3
