"""Which failed pulls need the night's reconciliation (pure): an unconsented type, or no fresh success behind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from consent_lifecycle.events.decide import stale_failures

AT = datetime(2026, 11, 5, 8, 0, tzinfo=UTC)
KEEPS_FRESH = pd.Timedelta(hours=24)  # freshness 48 h, synced every 24 h


def judged(*rows: tuple[str, str, str, bool, bool]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["company_id", "connection_id", "data_type", "consented", "failed"])
    return frame.assign(generated_at=pd.Timestamp(AT))


def successes(*rows: tuple[str, str, datetime]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["connection_id", "data_type", "last_success"])
    frame["last_success"] = pd.to_datetime(frame["last_success"], utc=True)
    return frame


def test_a_failure_with_a_fresh_success_behind_it_is_left_to_codats_next_sync():
    reads = judged(("fresh", "c1", "invoices", True, True), ("stale", "c2", "invoices", True, True),
                   ("never", "c3", "invoices", True, True), ("ok", "c4", "invoices", True, False))
    # c1's success, one sync interval before, stays fresh until the next sync; c2's goes stale before it
    known = successes(("c1", "invoices", AT - timedelta(hours=24)), ("c2", "invoices", AT - timedelta(hours=25)))
    assert stale_failures(reads, known, KEEPS_FRESH) == ["never", "stale"]


def test_a_failed_pull_of_an_unconsented_type_is_reconciled_however_fresh():
    reads = judged(("rogue", "c1", "journalEntries", False, True))
    known = successes(("c1", "journalEntries", AT - timedelta(hours=1)))
    assert stale_failures(reads, known, KEEPS_FRESH) == ["rogue"]


def test_without_a_freshness_every_failure_is_reconciled():
    reads = judged(("a", "c1", "invoices", True, True), ("b", "c2", "invoices", True, False))
    assert stale_failures(reads, successes(("c1", "invoices", AT)), None) == ["a"]
