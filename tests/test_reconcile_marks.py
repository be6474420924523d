"""Marks (real database): a reason taken off leaves the others; a mark left with none is gone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consent_lifecycle.reconcile import marks

AT = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def test_unmark_takes_one_reason_off_and_deletes_a_mark_left_with_none(engine):
    with engine.begin() as db:
        marks.mark(db, [("a", "remediation_pending"), ("a", "violation"), ("b", "remediation_pending"),
                        ("c", "violation")], AT)
        assert marks.unmark(db, ["a", "b", "c"], "remediation_pending", AT) == 2
        assert marks.unmark(db, ["a"], "violation", AT - timedelta(seconds=1)) == 0  # marked after that
    with engine.connect() as db:
        assert marks.marked(db) == {"a": ["violation"], "c": ["violation"]}
