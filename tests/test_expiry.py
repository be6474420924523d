"""The expiry model (issue 4, first part): the seed's UK 90-day and EU 180-day cases, as plain data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.expiry import classify

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
CATALOG = load_catalog()


def connection(source_type="Banking", status="Linked", *, authorized_days_ago=None, reconfirmed_days_ago=None,
               synced_days_ago=1, jurisdiction="uk", created_days_ago=300) -> dict:
    ago = lambda days: NOW - timedelta(days=days) if days is not None else None
    return {
        "id": "c", "company_id": "k", "source_type": source_type, "status": status, "jurisdiction": jurisdiction,
        "created_at": ago(created_days_ago), "last_sync_at": ago(synced_days_ago),
        "last_authorized_at": ago(authorized_days_ago), "last_reconfirmed_at": ago(reconfirmed_days_ago),
    }


def classified(*rows: dict) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    for column in ("created_at", "last_sync_at", "last_authorized_at", "last_reconfirmed_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return classify(frame, CATALOG, NOW)


@pytest.mark.parametrize(
    ("row", "expected_class", "threshold"),
    [
        (connection(authorized_days_ago=10), "healthy", None),
        (connection(authorized_days_ago=84), "expiring", 7),  # 6 days left under the UK 90 days
        (connection(authorized_days_ago=89), "expiring", 1),
        (connection(authorized_days_ago=91), "expired", None),
        (connection(authorized_days_ago=91, reconfirmed_days_ago=11), "healthy", None),  # reconfirmed at day 80
        (connection(authorized_days_ago=91, jurisdiction="eu"), "healthy", None),  # EU: 180 days
        (connection(authorized_days_ago=175, reconfirmed_days_ago=5, jurisdiction="eu"), "expiring", 7),
        (connection(authorized_days_ago=91, jurisdiction=None), "expired", None),  # default jurisdiction: uk
        (connection(status="Deauthorized", authorized_days_ago=5), "expired", None),
        (connection(status="PendingAuth"), "pending", None),
        (connection(status="Unlinked", authorized_days_ago=200), "unlinked", None),
        (connection("Accounting", synced_days_ago=61), "stale", None),
        (connection("Accounting", synced_days_ago=59), "healthy", None),
        (connection("Accounting", authorized_days_ago=400, synced_days_ago=2), "healthy", None),  # no policy
        (connection(authorized_days_ago=None, created_days_ago=85), "expiring", 7),  # never seen authorized
    ],
    ids=["healthy", "7-day", "1-day", "expired", "reconfirmed", "eu-180", "eu-no-reconfirm", "default-uk",
         "deauthorized", "pending", "unlinked", "stale", "fresh-accounting", "accounting-no-expiry", "created"],
)
def test_classes_and_thresholds(row, expected_class, threshold):
    result = classified(row).iloc[0]
    assert result["expiry_class"] == expected_class
    assert (None if pd.isna(result["threshold_days"]) else int(result["threshold_days"])) == threshold


def test_reconfirming_at_day_80_moves_expiry_to_day_170():
    linked = NOW - timedelta(days=91)
    result = classified(connection(authorized_days_ago=91, reconfirmed_days_ago=11)).iloc[0]
    assert result["expires_at"] == linked + timedelta(days=170)


def test_one_frame_many_connections_is_one_pass():
    rows = [connection(authorized_days_ago=d) | {"id": f"c{d}"} for d in range(100)]
    result = classified(*rows).set_index("id")
    counts = result["expiry_class"].value_counts().to_dict()
    assert counts == {"healthy": 83, "expiring": 7, "expired": 10}
    assert result.loc["c83", "threshold_days"] == 7 and result.loc["c89", "threshold_days"] == 1


def _for_notifications(*rows: dict) -> pd.DataFrame:
    frame = classified(*rows)
    frame["link_url"] = [f"https://link-api.codat.io/companies/k/connections/{i}/start" for i in frame["id"]]
    frame["redirect"] = "https://link.codat.io/company/k"
    frame["status_changed_at"] = pd.Timestamp(NOW - timedelta(days=2))
    return frame


def test_notifications_are_keyed_by_connection_threshold_and_expiry():
    from consent_lifecycle.expiry import plan_notifications

    frame = _for_notifications(
        connection(authorized_days_ago=84) | {"id": "warn7"},
        connection(authorized_days_ago=89) | {"id": "warn1"},
        connection(authorized_days_ago=91) | {"id": "late"},
        connection(status="Deauthorized", authorized_days_ago=5) | {"id": "deauth"},
        connection(authorized_days_ago=10) | {"id": "fine"},
    )
    planned = plan_notifications(frame, NOW).set_index("connection_id")
    assert set(planned.index) == {"warn7", "warn1", "late", "deauth"}
    assert planned.loc["warn7", "kind"] == "expiry_warning" and planned.loc["warn7", "threshold_days"] == 7
    expiry = (NOW - timedelta(days=84) + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert planned.loc["warn7", "key"] == f"expiry_warning:warn7:7d:{expiry}"
    assert planned.loc["late", "kind"] == "expired" and planned.loc["late", "key"].startswith("expired:late:0d:")
    assert planned.loc["deauth", "expires_at"] == pd.Timestamp(NOW - timedelta(days=2))  # when it went
    assert planned.loc["warn1", "link"].endswith("/connections/warn1/start")
    # the same state planned again gives the same keys: the outbox's unique key makes reruns queue nothing
    again = plan_notifications(frame, NOW + timedelta(hours=3))
    assert set(again["key"]) == set(planned["key"])


def test_a_reconfirmation_moves_the_expiry_and_so_the_key():
    from consent_lifecycle.expiry import plan_notifications

    before = plan_notifications(_for_notifications(connection(authorized_days_ago=84)), NOW)
    after_reconfirm = plan_notifications(
        _for_notifications(connection(authorized_days_ago=170, reconfirmed_days_ago=84)), NOW
    )
    assert before["key"].tolist() == after_reconfirm["key"].tolist()  # same expiry, same warning: not sent twice
    renewed = plan_notifications(_for_notifications(connection(authorized_days_ago=84, reconfirmed_days_ago=1)), NOW)
    assert renewed.empty


def test_entitlements_exclude_a_connection_expired_at_that_time_until_reconfirmed(engine):
    from consent_lifecycle.ledger import Ledger
    from consent_lifecycle.snapshot import observe, store
    from tests.test_snapshot import BANK, COMPANY, CREATED, T0, company

    store.apply_observation(engine, observe([company()]), T0)  # the bank first seen Linked: authorized CREATED
    ledger = Ledger(engine, CATALOG)
    ledger.grant(COMPANY, "lending", wording_version="w1", actor="t", channel="api", at=T0)

    def banks(**when) -> set[str]:
        frame = ledger.entitlements(COMPANY, **when)
        return set(frame.loc[frame["connection_id"] == BANK, "data_type"])

    assert banks(now=CREATED + timedelta(days=80)) == {"banking-accounts", "banking-transactions"}
    assert banks(now=CREATED + timedelta(days=91)) == set()  # UK: 90 days after authorization
    assert banks(as_of=T0 + timedelta(hours=1)) == set()  # as of a time: expired then too
    ledger.reconfirm(COMPANY, "lending", actor="t", channel="ui", at=T0 + timedelta(days=1))
    assert banks(now=T0 + timedelta(days=2)) == {"banking-accounts", "banking-transactions"}
    assert banks(now=T0 + timedelta(days=92)) == set()
