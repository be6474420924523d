"""The sync settings the reconciliation sets (pure): exactly the entitled types, each often enough for the
catalog's freshness; a company already so is left alone."""

from __future__ import annotations

import pandas as pd

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.reconcile.diff import SETTING_COLUMNS, desired_sync_settings

CATALOG = load_catalog()  # freshness 48 h, schedule 24 h


def settings(*rows: tuple[str, str, int]) -> pd.DataFrame:
    return pd.DataFrame([(c, t, True, h, i) for i, (c, t, h) in enumerate(rows)], columns=SETTING_COLUMNS)


def entitled(*rows: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["company_id", "data_type"]).assign(connection_id="n")


def test_a_type_synced_less_often_than_the_freshness_needs_is_rescheduled_and_the_rest_kept():
    current = settings(("weekly", "invoices", 168), ("weekly", "bills", 12), ("fine", "invoices", 24))
    desired = desired_sync_settings(current, entitled(("weekly", "invoices"), ("weekly", "bills"),
                                                      ("fine", "invoices")), CATALOG)
    schedules = dict(zip(desired["data_type"], desired["sync_schedule"], strict=True))
    assert set(desired["company_id"]) == {"weekly"}  # "fine" is left alone: nothing to set
    assert schedules == {"invoices": CATALOG.sync_schedule_hours, "bills": 12}


def test_types_no_consent_covers_are_dropped_and_missing_ones_scheduled():
    desired = desired_sync_settings(settings(("a", "journalEntries", 24)), entitled(("a", "invoices")), CATALOG)
    assert desired[["company_id", "data_type", "sync_schedule"]].values.tolist() == [
        ["a", "invoices", CATALOG.sync_schedule_hours]]
