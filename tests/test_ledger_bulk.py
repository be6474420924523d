"""`Ledger.grant_many`: the same events, current state and refusals as `Ledger.grant` called once per grant
in input order, and bad input refused with nothing written. On SQLite and PostgreSQL (`engine`), against a
sequential reference on a SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.codat.models import Company
from consent_lifecycle.db import make_engine, upgrade
from consent_lifecycle.db import models as m
from consent_lifecycle.ledger import ConsentError, Ledger
from consent_lifecycle.snapshot import observe, store

CATALOG = load_catalog()
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SEEN = T0 - timedelta(days=30)


def _id(company: int, part: int = 0) -> str:
    return f"{company:08x}-0000-4000-8000-{part:012x}"


#: per company: (connection number, source type, status); company 5 is deleted at Codat later
WORLD = {
    1: [(1, "Accounting", "Linked"), (2, "Banking", "Linked"), (3, "Banking", "Deauthorized")],
    2: [(1, "Accounting", "Linked")],
    3: [(1, "Banking", "PendingAuth")],
    4: [(1, "Accounting", "Linked"), (2, "Banking", "Linked"), (3, "Commerce", "Linked")],
    5: [(1, "Accounting", "Linked")],
}


def _companies() -> list[Company]:
    return [
        Company.model_validate(
            {
                "id": _id(number), "name": f"Company {number}", "redirect": "https://link",
                "dataConnections": [
                    {
                        "id": _id(number, part), "integrationId": _id(99, 1), "sourceId": _id(99, 2),
                        "platformName": source, "linkUrl": "https://link", "status": status,
                        "created": "2025-11-01T00:00:00Z", "sourceType": source,
                    }
                    for part, source, status in connections
                ],
            }
        )
        for number, connections in WORLD.items()
    ]


def _prepare(engine: Engine) -> Ledger:
    """The world in the snapshot, and some history: company 1 granted then revoked lending; company 5
    deleted at Codat."""
    store.apply_observation(engine, observe(_companies()), SEEN)
    ledger = Ledger(engine, CATALOG)
    ledger.grant(_id(1), "lending", wording_version="v0", actor="a", channel="ui", at=T0 - timedelta(days=10))
    ledger.revoke(_id(1), "lending", reason="r", actor="a", channel="ui", at=T0 - timedelta(days=5))
    ledger.grant(_id(4), "dashboard", wording_version="v0", actor="a", channel="ui", at=T0 - timedelta(days=3))
    with engine.begin() as db:
        db.execute(m.Company.__table__.update().where(m.Company.id == _id(5)).values(deleted_at=T0))
    return ledger


@pytest.fixture
def reference(tmp_path) -> Ledger:
    url = f"sqlite:///{tmp_path / 'reference.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield _prepare(engine)
    engine.dispose()


@pytest.fixture
def bulk(engine: Engine) -> Ledger:
    return _prepare(engine)


def grant(company: int, product: str, at: datetime = T0, **extra: Any) -> dict[str, Any]:
    return {
        "company_id": _id(company), "product": product, "wording_version": "v1", "actor": "onboarding",
        "channel": "ui", "at": at, **extra,
    }


VALID = [
    grant(1, "dashboard"),
    grant(1, "bank-feeds", recorded_at=T0 + timedelta(hours=1)),
    grant(1, "lending", T0 + timedelta(minutes=1)),  # reactivates the revoked consent (same id)
    grant(2, "dashboard", data_types=["invoices", "bills"]),
    grant(4, "lending", connections=[_id(4, 1)]),
    grant(4, "spend-insights"),
]
REFUSED = [
    grant(3, "dashboard"),  # no Linked accounting connection
    grant(3, "lending"),  # only a PendingAuth bank
    grant(4, "dashboard"),  # already granted
    grant(1, "dashboard", T0 + timedelta(days=1)),  # granted earlier in this input
    grant(5, "dashboard"),  # deleted at Codat
    grant(9, "dashboard"),  # unknown company
    grant(2, "nope"),  # unknown product
    grant(2, "lending", channel="fax"),
    grant(2, "lending", at=datetime(2026, 1, 1)),  # naive
    grant(2, "lending", wording_version=""),
    grant(1, "lending", T0 - timedelta(days=6)),  # before the consent's last event (the revocation)
    grant(2, "dashboard", T0, data_types=["banking-transactions"]),  # not a dashboard type
    grant(2, "lending", connections=[_id(1, 1)]),  # another company's connection
]


def sequential(ledger: Ledger, grants: list[dict[str, Any]]) -> list[tuple[int, str]]:
    refused = []
    for index, arguments in enumerate(grants):
        arguments = dict(arguments)
        try:
            ledger.grant(arguments.pop("company_id"), arguments.pop("product"), **arguments)
        except ConsentError as exc:
            refused.append((index, str(exc)))
    return refused


def events(ledger: Ledger) -> list[dict[str, Any]]:
    """Every event, with consent ids replaced by (company, product): they are random per consent."""
    with ledger.engine.connect() as db:
        rows = [dict(r) for r in db.execute(select(m.ConsentEvent.__table__).order_by(m.ConsentEvent.id)).mappings()]
        owners = {r.id: (r.company_id, r.product) for r in db.execute(select(m.Consent.__table__))}
    for row in rows:
        row["consent_id"] = owners[row["consent_id"]]
    return rows


def state(ledger: Ledger) -> dict[str, Any]:
    views = {}
    for number in WORLD:
        for view in ledger.consents(_id(number)):
            shown = view.as_dict()
            shown.pop("consent_id", None)
            views[(number, view.product)] = shown
    with ledger.engine.connect() as db:
        consents = {
            (r.company_id, r.product): (r.status, r.granted_at, r.updated_at, r.revoked_at, r.wording_version)
            for r in db.execute(select(m.Consent.__table__))
        }
    return {"views": views, "consents": consents, "entitlements": ledger.entitlements().to_dict("records")}


def count(ledger: Ledger, table: Any) -> int:
    with ledger.engine.connect() as db:
        return db.execute(select(func.count()).select_from(table)).scalar_one()


def test_grant_many_writes_what_sequential_grants_write(reference: Ledger, bulk: Ledger) -> None:
    assert sequential(reference, VALID) == []
    assert bulk.grant_many(VALID, chunk_size=4) == []
    assert events(bulk) == events(reference)
    assert state(bulk) == state(reference)
    reactivated = [e for e in events(bulk) if e["consent_id"] == (_id(1), "lending")]
    assert [e["event_type"] for e in reactivated] == ["granted", "revoked", "granted"]


@pytest.mark.parametrize("chunk_size", [1, 5, 1000])
def test_skipping_refusals_matches_sequential_grants_and_their_reasons(
    reference: Ledger, bulk: Ledger, chunk_size: int
) -> None:
    mixed = [g for pair in zip(VALID, REFUSED, strict=False) for g in pair] + REFUSED[len(VALID) :]
    expected = sequential(reference, mixed)
    assert len(expected) == len(REFUSED)
    assert bulk.grant_many(mixed, skip_refused=True, chunk_size=chunk_size) == expected
    assert events(bulk) == events(reference)
    assert state(bulk) == state(reference)


@pytest.mark.parametrize("bad", range(len(REFUSED)))
def test_a_refused_grant_refuses_the_whole_input_and_writes_nothing(bulk: Ledger, bad: int) -> None:
    before = (events(bulk), state(bulk), count(bulk, m.ConsentDataType), count(bulk, m.ConsentConnection))
    grants = [*VALID, REFUSED[bad]]
    with pytest.raises(ConsentError, match=rf"^grant #{len(VALID)} \({REFUSED[bad]['company_id']}, ") as caught:
        bulk.grant_many(grants, chunk_size=2)  # the refused one is in the last chunk
    assert "nothing was written" in str(caught.value)
    after = (events(bulk), state(bulk), count(bulk, m.ConsentDataType), count(bulk, m.ConsentConnection))
    assert after == before


def test_the_error_carries_the_reason_grant_gives(reference: Ledger, bulk: Ledger) -> None:
    alone = [bad for bad in REFUSED if bad is not REFUSED[3]]  # REFUSED[3] is refused only after VALID[0]
    reasons = sequential(reference, alone)
    assert [index for index, _ in reasons] == list(range(len(alone)))
    for bad, (_, reason) in zip(alone, reasons, strict=True):
        with pytest.raises(ConsentError) as caught:
            bulk.grant_many([bad])
        assert str(caught.value).startswith(f"grant #0 ({bad['company_id']}, {bad['product']!r}): {reason}")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"company_id": _id(2), "product": "dashboard"}, "grant #0: missing argument 'actor'"),
        ({**grant(2, "dashboard"), "colour": "red"}, "grant #0: unknown argument 'colour'"),
        ({**grant(2, "dashboard"), "at": "2026-01-01"}, "grant #0: at must be a datetime, got str"),
        ({**grant(2, "dashboard"), "company_id": None}, "grant #0: company_id must be a string"),
    ],
)
def test_malformed_input_is_refused_naming_it(bulk: Ledger, arguments: dict[str, Any], message: str) -> None:
    before = events(bulk)
    with pytest.raises(ConsentError, match=message):
        bulk.grant_many([grant(2, "dashboard"), arguments][1:])
    with pytest.raises(ConsentError, match=message.replace("#0", "#1")):
        bulk.grant_many([grant(2, "dashboard"), arguments])
    assert events(bulk) == before


def test_nothing_to_grant(bulk: Ledger) -> None:
    before = events(bulk)
    assert bulk.grant_many([]) == []
    assert events(bulk) == before
    with pytest.raises(ConsentError, match="chunk_size"):
        bulk.grant_many(VALID, chunk_size=0)
