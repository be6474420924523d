"""The ledger against a brute-force reference model, over random sequences of consent events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.codat.models import Company
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE
from consent_lifecycle.db import make_engine, upgrade
from consent_lifecycle.ledger import ConsentError, Ledger
from consent_lifecycle.snapshot import observe, store

CATALOG = load_catalog()
PRODUCTS = list(CATALOG.products)
#: (name, source type, status): one company's connections in every example
CONNECTIONS = [
    ("acct", "Accounting", "Linked"),
    ("bank1", "Banking", "Linked"),
    ("bank2", "Banking", "Deauthorized"),
    ("shop", "Commerce", "Linked"),
]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory) -> Ledger:
    url = f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}"
    upgrade(url)
    return Ledger(make_engine(url), CATALOG)


def new_company(ledger: Ledger) -> tuple[str, dict[str, str]]:
    company_id = str(uuid.uuid4())
    ids = {name: str(uuid.uuid4()) for name, _, _ in CONNECTIONS}
    connections = [
        {
            "id": ids[name], "integrationId": str(uuid.uuid4()), "sourceId": str(uuid.uuid4()),
            "platformName": name, "linkUrl": "https://link", "status": status, "created": "2025-12-01T00:00:00Z",
            "sourceType": source,
        }
        for name, source, status in CONNECTIONS
    ]
    company = Company.model_validate(
        {"id": company_id, "name": "P", "redirect": "https://link", "dataConnections": connections}
    )
    store.apply_observation(ledger.engine, observe([company]), T0)
    return company_id, ids


# -- the reference model ---------------------------------------------------------------------------

SOURCE = {name: source for name, source, _ in CONNECTIONS}
LINKED = {name for name, _, status in CONNECTIONS if status == "Linked"}


@dataclass
class Model:
    consents: dict[str, dict] = field(default_factory=dict)  # product -> {"types": set, "conns": set}

    def pairs(self, only_linked: bool = True) -> dict[tuple[str, str], set[str]]:
        covered: dict[tuple[str, str], set[str]] = {}
        for product, consent in self.consents.items():
            for conn in consent["conns"]:
                for data_type in consent["types"]:
                    if DATA_TYPE_SOURCE[data_type] == SOURCE[conn] and (conn in LINKED or not only_linked):
                        covered.setdefault((conn, data_type), set()).add(product)
        return covered

    def apply(self, op: tuple) -> bool:
        """Apply `op` if valid; return whether it was."""
        kind, product = op[0], op[1]
        active = product in self.consents
        if kind == "grant":
            _, _, types, conns = op
            if active:
                return False
            types = set(types) or set(CATALOG.product(product).required)
            sources = {DATA_TYPE_SOURCE[t] for t in types}
            if conns:
                if any(SOURCE[c] not in sources for c in conns):
                    return False
                chosen = set(conns)
            else:
                chosen = {c for c in LINKED if SOURCE[c] in sources}
                if not chosen:
                    return False
            self.consents[product] = {"types": types, "conns": chosen}
            return True
        if kind == "extend":
            _, _, types, conns = op
            if not active:
                return False
            consent = self.consents[product]
            sources = {DATA_TYPE_SOURCE[t] for t in consent["types"] | set(types)}
            if any(SOURCE[c] not in sources for c in conns):
                return False
            if not (set(types) - consent["types"]) and not (set(conns) - consent["conns"]):
                return False
            consent["types"] |= set(types)
            consent["conns"] |= set(conns)
            return True
        if kind in ("revoke", "reconfirm"):
            if not active:
                return False
            if kind == "revoke":
                del self.consents[product]
            return True
        if kind == "disconnect":
            conn = op[1]
            users = [c for c in self.consents.values() if conn in c["conns"]]
            for consent in users:
                consent["conns"].discard(conn)
            return bool(users)
        raise AssertionError(kind)


def _ops() -> st.SearchStrategy:
    # Dashboard and Lending share data types: weight them so revocations with shared data are common
    product = st.sampled_from(["dashboard", "lending", "dashboard", "lending", *PRODUCTS])
    conns = st.lists(st.sampled_from([c for c, _, _ in CONNECTIONS]), max_size=2, unique=True)

    def typed(kind: str) -> st.SearchStrategy:
        return product.flatmap(
            lambda p: st.tuples(
                st.just(kind), st.just(p),
                st.lists(st.sampled_from(sorted(CATALOG.product(p).data_types)), max_size=3, unique=True),
                conns,
            )
        )

    return st.one_of(
        typed("grant"), typed("extend"),
        st.tuples(st.sampled_from(["revoke", "reconfirm"]), product),
        st.tuples(st.just("disconnect"), st.sampled_from([c for c, _, _ in CONNECTIONS])),
    )


def run(ledger: Ledger, company_id: str, ids: dict[str, str], op: tuple, at: datetime):
    who = {"actor": "property", "channel": "api", "at": at}
    kind = op[0]
    if kind in ("grant", "extend"):
        _, product, types, conns = op
        call = ledger.grant if kind == "grant" else ledger.extend
        extra = {"wording_version": "w1"} if kind == "grant" else {}
        return call(company_id, product, data_types=types or None, connections=[ids[c] for c in conns] or None,
                    **extra, **who)
    if kind == "revoke":
        return ledger.revoke(company_id, op[1], reason="property", **who)
    if kind == "reconfirm":
        return ledger.reconfirm(company_id, op[1], **who)
    return ledger.disconnect(company_id, ids[op[1]], **who)


def as_pairs(frame, ids: dict[str, str]) -> dict[tuple[str, str], set[str]]:
    names = {v: k for k, v in ids.items()}
    return {(names[r["connection_id"]], r["data_type"]): set(r["products"]) for r in frame.to_dict("records")}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_ops(), min_size=1, max_size=12), gaps=st.lists(st.integers(0, 48), min_size=12, max_size=12))
def test_ledger_equals_the_reference_model(ledger, ops, gaps):
    company_id, ids = new_company(ledger)
    model = Model()
    history: list[tuple[datetime, dict]] = []
    at = T0
    for op, gap in zip(ops, gaps, strict=False):
        at = at + timedelta(hours=gap)
        before = model.pairs(only_linked=False)
        valid = model.apply(op)
        try:
            result = run(ledger, company_id, ids, op, at)
        except ConsentError:
            assert not valid, f"ledger refused a valid {op}"
            continue
        assert valid, f"ledger accepted an invalid {op}"
        if op[0] == "revoke":
            # never delete what another active consent still covers
            after = model.pairs(only_linked=False)
            names = {v: k for k, v in ids.items()}
            for row in result.delete:
                assert (names[row["connection_id"]], row["data_type"]) not in after
            lost = {pair for pair, products in before.items() if products == {op[1]}}
            assert {(names[r["connection_id"]], r["data_type"]) for r in result.delete} == lost
        history.append((at, model.pairs()))
        assert as_pairs(ledger.entitlements(company_id), ids) == model.pairs()

    for moment, expected in history:
        later = [m for m, _ in history if m == moment]
        if len(later) == 1:  # several events at one instant: as-of sees them all, so compare the last only
            assert as_pairs(ledger.entitlements(company_id, as_of=moment), ids) == expected
    assert as_pairs(ledger.entitlements(company_id, as_of=at + timedelta(days=1)), ids) == model.pairs()
