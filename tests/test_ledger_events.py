"""The ledger announces revocations and disconnections (what the CLI turns into Prefect events) once they
have committed; a listener that fails neither fails nor undoes the change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.db import make_engine
from consent_lifecycle.db.models import ConsentEvent
from consent_lifecycle.ledger import ConsentError, Impact, Ledger
from consent_lifecycle.snapshot import observe, store
from tests.test_snapshot import BANK, COMPANY, company

T0 = datetime(2026, 11, 1, tzinfo=UTC)
WHO = {"actor": "test", "channel": "api"}


@pytest.fixture
def heard(sqlite_url):
    engine = make_engine(sqlite_url)
    store.apply_observation(engine, observe([company()]), T0)
    changes: list[tuple[str, Impact, int]] = []

    def listen(change: str, effect: Impact) -> None:
        with engine.connect() as db:  # committed already: another connection sees the event
            changes.append((change, effect, db.scalar(select(func.count()).select_from(ConsentEvent))))

    ledger = Ledger(engine, load_catalog(), on_change=listen)
    ledger.grant(COMPANY, "lending", wording_version="w1", at=T0 + timedelta(hours=1), **WHO)
    ledger.grant(COMPANY, "dashboard", wording_version="w1", at=T0 + timedelta(hours=1), **WHO)
    return ledger, changes


def test_revoke_and_disconnect_are_announced_after_they_commit(heard):
    ledger, changes = heard
    assert changes == []  # grants are not announced

    revoked = ledger.revoke(COMPANY, "dashboard", reason="r", at=T0 + timedelta(hours=2), **WHO)
    disconnected = ledger.disconnect(COMPANY, BANK, at=T0 + timedelta(hours=3), **WHO)

    assert [(c, e) for c, e, _ in changes] == [("revoked", revoked), ("disconnected", disconnected)]
    assert [n for _, _, n in changes] == [3, 4]
    assert changes[0][1].as_dict()["company_id"] == COMPANY and changes[0][1].product == "dashboard"


def test_a_refused_change_is_not_announced(heard):
    ledger, changes = heard
    with pytest.raises(ConsentError):
        ledger.revoke(COMPANY, "bank-feeds", reason="r", at=T0 + timedelta(hours=2), **WHO)
    assert changes == []


def test_a_failing_listener_leaves_the_change_recorded(sqlite_url):
    engine = make_engine(sqlite_url)
    store.apply_observation(engine, observe([company()]), T0)

    def broken(change: str, effect: Impact) -> None:
        raise ConnectionError("no Prefect server")

    ledger = Ledger(engine, load_catalog(), on_change=broken)
    ledger.grant(COMPANY, "lending", wording_version="w1", at=T0 + timedelta(hours=1), **WHO)
    effect = ledger.revoke(COMPANY, "lending", reason="r", at=T0 + timedelta(hours=2), **WHO)

    assert effect.product == "lending"
    assert ledger.consents(COMPANY)[0].status == "revoked"
