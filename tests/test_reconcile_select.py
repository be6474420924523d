"""select_companies: which companies a night reads, one reason each by priority (pure, over frames)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from consent_lifecycle.reconcile.select import (
    GRACE,
    REASONS,
    SelectionInputs,
    select_companies,
    sweep_slice,
    within_budget,
)

NOW = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
YESTERDAY = NOW - timedelta(days=1)
SWEEP = 7


def ts(moment):
    return pd.Timestamp(moment)


def inputs(companies, *, cursors=None, marks=None, consent=None, connections=None, in_flight=()):
    """Every company reconciled yesterday unless `cursors` says otherwise."""
    cursors = {c: YESTERDAY for c in companies} if cursors is None else cursors
    return SelectionInputs(
        companies=pd.DataFrame({"company_id": list(companies)}),
        cursors=pd.DataFrame(
            {"company_id": list(cursors), "reconciled_at": pd.to_datetime(list(cursors.values()), utc=True)}
        ),
        marks=pd.DataFrame({"company_id": list(marks or {}), "reasons": list((marks or {}).values())}),
        consent_changes=pd.DataFrame(
            {"company_id": list(consent or {}), "recorded_at": pd.to_datetime(list((consent or {}).values()), utc=True)}
        ),
        connections=pd.DataFrame(
            [(c, ts(s), ts(r) if r else pd.NaT) for c, s, r in (connections or [])],
            columns=["company_id", "last_sync_at", "last_read_at"],
        ),
        in_flight=pd.DataFrame({"company_id": list(in_flight)}),
    )


def not_swept(count, now=NOW):
    """`count` company ids outside `now`'s sweep slice."""
    ids = pd.Series([f"c{i:05d}" for i in range(count * 3)])
    return ids[~sweep_slice(ids, now, SWEEP)].head(count).tolist()


def reasons_of(selection):
    return selection.reason_of()


def test_an_unchanged_company_reconciled_yesterday_is_not_read():
    (quiet,) = not_swept(1)
    assert select_companies(inputs([quiet]), NOW, SWEEP, full=False).company_ids == []


def test_full_reads_everything_with_reason_full():
    ids = not_swept(5)
    selection = select_companies(inputs(ids, marks={ids[0]: ["violation"]}), NOW, SWEEP, full=True)
    assert selection.company_ids == sorted(ids) and selection.reasons == {"full": 5}


@pytest.mark.parametrize("reason", ["violation", "failed_pull", "connection_change", "company_change",
                                    "processing_failed"])
def test_each_mark_reason(reason):
    (company,) = not_swept(1)
    assert reasons_of(select_companies(inputs([company], marks={company: [reason]}), NOW, SWEEP, False)) == {
        company: reason
    }


def test_consent_changed_after_the_last_reconciliation_only():
    before, after = not_swept(2)
    data = inputs([before, after], consent={before: YESTERDAY - timedelta(hours=1), after: YESTERDAY + timedelta(hours=1)})
    assert reasons_of(select_companies(data, NOW, SWEEP, False)) == {after: "consent_changed"}


def test_lost_webhook_is_a_last_sync_past_the_last_read_and_reconciliation_beyond_the_grace():
    lost, read, within_grace, old_sync = not_swept(4)
    synced = NOW - timedelta(hours=3)
    data = inputs(
        [lost, read, within_grace, old_sync],
        connections=[
            (lost, synced, synced - timedelta(hours=20)),  # read event of an earlier sync only
            (read, synced, synced),  # its read.completed arrived
            (within_grace, synced, synced - GRACE + timedelta(minutes=1)),
            (old_sync, YESTERDAY - timedelta(hours=2), None),  # before the last reconciliation
        ],
    )
    assert reasons_of(select_companies(data, NOW, SWEEP, False)) == {lost: "lost_webhook"}


def test_lost_webhook_from_the_company_last_sync():
    lost, read = not_swept(2)
    synced = NOW - timedelta(hours=3)
    data = inputs([lost, read], connections=[(lost, synced - timedelta(days=2), synced - timedelta(days=2)),
                                             (read, synced, synced)])
    data = SelectionInputs(
        companies=data.companies.assign(last_sync_at=pd.to_datetime([synced, synced], utc=True)),
        cursors=data.cursors, marks=data.marks, consent_changes=data.consent_changes,
        connections=data.connections, in_flight=data.in_flight,
    )
    assert reasons_of(select_companies(data, NOW, SWEEP, False)) == {lost: "lost_webhook"}


def test_in_flight_never_reconciled_and_overdue():
    flying, new, overdue, fresh = not_swept(4)
    data = inputs(
        [flying, new, overdue, fresh],
        cursors={flying: YESTERDAY, overdue: NOW - timedelta(days=SWEEP + 1), fresh: YESTERDAY},
        in_flight=[flying],
    )
    assert reasons_of(select_companies(data, NOW, SWEEP, False)) == {
        flying: "in_flight", new: "never_reconciled", overdue: "overdue"
    }


def test_one_reason_per_company_by_priority():
    (company,) = not_swept(1)
    data = inputs(
        [company],
        cursors={},
        marks={company: ["processing_failed", "failed_pull"]},
        consent={company: NOW},
        in_flight=[company],
    )
    selection = select_companies(data, NOW, SWEEP, False)
    assert selection.chosen.to_dict("records") == [{"company_id": company, "reason": "failed_pull"}]


def test_chosen_are_ordered_by_priority():
    ids = not_swept(3)
    data = inputs(ids, cursors={ids[1]: YESTERDAY}, marks={ids[2]: ["violation"]})
    selection = select_companies(data, NOW, SWEEP, False)
    ranks = [REASONS.index(r) for r in selection.chosen["reason"]]
    assert ranks == sorted(ranks) and selection.chosen["reason"].iloc[0] == "violation"


def test_the_sweep_reads_every_company_once_in_sweep_days_consecutive_nights():
    ids = [f"company-{i}" for i in range(700)]
    seen: dict[str, int] = {}
    for night in range(SWEEP):
        selection = select_companies(inputs(ids), NOW + timedelta(days=night), SWEEP, False)
        assert set(selection.reasons) <= {"sweep"}
        for company in selection.company_ids:
            seen[company] = seen.get(company, 0) + 1
    assert seen == dict.fromkeys(ids, 1)
    # and the slices are roughly even
    nightly = [int(sweep_slice(pd.Series(ids), NOW + timedelta(days=n), SWEEP).sum()) for n in range(SWEEP)]
    assert all(60 <= n <= 140 for n in nightly), nightly


def test_sweep_days_below_one_is_refused():
    with pytest.raises(ValueError, match="sweep_days must be at least 1, got 0"):
        select_companies(inputs(["a"]), NOW, 0, False)


def test_the_budget_keeps_the_highest_priorities_and_defers_the_sweep():
    ids = [f"company-{i}" for i in range(300)]
    marked = {c: ["violation"] for c in ids[:10]}
    selection = select_companies(inputs(ids, marks=marked), NOW, SWEEP, False)
    swept = selection.reasons["sweep"]
    # cap 60/min, 2 requests a company: 30 companies a minute; half a minute holds 15
    kept = within_budget(selection, 60, 0.5)
    assert kept.reasons == {"violation": 10, "sweep": 5}
    assert kept.deferred == swept - 5 and kept.estimated_minutes == round((10 + swept) * 2 / 60, 2)
    assert within_budget(selection, 0, 0.5).company_ids == selection.company_ids  # no cap, no deferral
    roomy = within_budget(selection, 6000, 60)
    assert roomy.deferred == 0 and roomy.company_ids == selection.company_ids


def test_a_second_run_the_same_day_does_not_sweep_again():
    ids = pd.Series([f"company-{i}" for i in range(100)])
    swept = ids[sweep_slice(ids, NOW, SWEEP)].tolist()
    assert swept
    earlier_today = NOW - timedelta(hours=1)
    data = inputs(ids.tolist(), cursors={c: (earlier_today if c in swept else YESTERDAY) for c in ids})
    assert select_companies(data, NOW, SWEEP, False).company_ids == []


def test_selection_inputs_from_the_database(engine):
    """store.selection_inputs reads what the selection needs (SQLite, and PostgreSQL when configured)."""
    from sqlalchemy import insert

    from consent_lifecycle.db.models import Company, Connection, ConsentEvent, PullRecord
    from consent_lifecycle.reconcile import marks
    from consent_lifecycle.reconcile.store import advance_cursors, selection_inputs

    ids = not_swept(6)
    gone, marked, consented, lost, flying, new = ids
    old = NOW - timedelta(days=30)
    with engine.begin() as db:
        db.execute(insert(Company), [
            {"id": c, "name": c, "tags": {}, "redirect": "https://link", "first_seen_at": old, "last_seen_at": old,
             "deleted_at": NOW if c == gone else None} for c in ids
        ])
        db.execute(insert(Connection), [
            {"id": f"{c}-conn", "company_id": c, "source_type": "Accounting", "platform_name": "Xero",
             "status": "Linked", "link_url": "https://link", "created_at": old, "first_seen_at": old,
             "last_seen_at": old, "status_changed_at": old,
             "last_sync_at": NOW - timedelta(hours=2) if c == lost else old, "last_read_at": None}
            for c in ids
        ])
        db.execute(insert(ConsentEvent), [{
            "consent_id": "k1", "company_id": consented, "product": "dashboard", "event_type": "granted",
            "data_types": ["invoices"], "connection_ids": [f"{consented}-conn"], "actor": "customer", "channel": "ui",
            "at": NOW - timedelta(hours=3), "recorded_at": NOW - timedelta(hours=3),
        }])
        db.execute(insert(PullRecord), [{
            "id": "p1", "company_id": flying, "connection_id": f"{flying}-conn", "data_type": "invoices",
            "status": "Queued", "requested": YESTERDAY, "completed": None, "seen_at": YESTERDAY,
        }])
        advance_cursors(db, [c for c in ids if c != new], YESTERDAY, YESTERDAY)
        marks.mark(db, [(marked, "failed_pull")], NOW)
    with engine.connect() as db:
        selection = select_companies(selection_inputs(db), NOW, SWEEP, False)
    assert selection.reason_of() == {
        marked: "failed_pull", consented: "consent_changed", lost: "lost_webhook", flying: "in_flight",
        new: "never_reconciled",
    }
