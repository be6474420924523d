"""Storing reconciliation findings: a rerun rewrites what changed and leaves the rest as stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import Engine, select

from consent_lifecycle.db import models as m
from consent_lifecycle.reconcile.diff import FINDING_COLUMNS
from consent_lifecycle.reconcile.store import store_findings

NIGHT_1 = datetime(2026, 11, 1, 12, tzinfo=UTC)
NIGHT_2 = NIGHT_1 + timedelta(days=1)
REQUESTED = NIGHT_1 - timedelta(days=3)
KINDS = ("unconsented_pull", "missing_pull")


def findings(statuses: dict[str, str], seen_now: datetime) -> pd.DataFrame:
    rows = [
        {
            "key": f"unconsented_pull:{pull}",
            "kind": "unconsented_pull",
            "company_id": "c-1",
            "connection_id": "k-1",
            "data_type": "invoices",
            "product": None,
            "seen_at": pd.Timestamp(REQUESTED),
            "detail": {"pull_id": pull, "status": status},
        }
        for pull, status in statuses.items()
    ]
    rows.append(
        {
            "key": "missing_pull:c-1:k-1:bills",
            "kind": "missing_pull",
            "company_id": "c-1",
            "connection_id": "k-1",
            "data_type": "bills",
            "product": None,
            "seen_at": pd.Timestamp(seen_now),
            "detail": {"last_success": None},
        }
    )
    return pd.DataFrame(rows, columns=FINDING_COLUMNS)


def stored(engine: Engine) -> dict[str, tuple]:
    with engine.connect() as db:
        rows = db.execute(select(m.Finding.key, m.Finding.detail, m.Finding.occurrences)).all()
    return {key: (detail, occurrences) for key, detail, occurrences in rows}


def test_a_rerun_rewrites_findings_of_pulls_read_again_and_keeps_the_others(engine: Engine) -> None:
    with engine.begin() as db:
        first = store_findings(
            db, findings({"p-1": "Queued", "p-2": "Queued"}, NIGHT_1), ["c-1"], KINDS, NIGHT_1, {"p-1", "p-2"}
        )
    assert first == {"found": 3, "new": 3, "resolved": 0}

    # night 2: p-1 was read again (now Complete); p-2 was not read again, so what is stored of it stands
    with engine.begin() as db:
        second = store_findings(
            db, findings({"p-1": "Complete", "p-2": "Complete"}, NIGHT_2), ["c-1"], KINDS, NIGHT_2, {"p-1"}
        )
    assert second == {"found": 3, "new": 0, "resolved": 0}
    after = stored(engine)
    assert after["unconsented_pull:p-1"] == ({"pull_id": "p-1", "status": "Complete"}, 1)
    assert after["unconsented_pull:p-2"] == ({"pull_id": "p-2", "status": "Queued"}, 1)
    assert after["missing_pull:c-1:k-1:bills"][1] == 2  # a state finding seen again, later: counted again


def test_without_refetched_every_finding_is_written(engine: Engine) -> None:
    with engine.begin() as db:
        store_findings(db, findings({"p-1": "Queued"}, NIGHT_1), ["c-1"], KINDS, NIGHT_1)
    with engine.begin() as db:
        store_findings(db, findings({"p-1": "Complete"}, NIGHT_2), ["c-1"], KINDS, NIGHT_2)
    assert stored(engine)["unconsented_pull:p-1"][0] == {"pull_id": "p-1", "status": "Complete"}
