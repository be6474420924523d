"""Retention against the ledger's reference model, over random histories with retention runs interleaved:
no executed deletion ever covers data an active consent covered when it executed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from consent_lifecycle.ledger import ConsentError
from consent_lifecycle.retention import store
from consent_lifecycle.retention.execute import Outcome, execute
from tests.test_ledger_properties import CATALOG, T0, Model, _ops, ledger, new_company, run  # noqa: F401

deleted_at_codat: list[tuple[str, str]] = []


class NoLocalStore:
    def purge(self, db, company_id: str, data_type: str) -> None:
        return None


async def delete_connection(company_id: str, connection_id: str) -> int:
    deleted_at_codat.append((company_id, connection_id))
    return 200


def retention_run(book, company_id: str, now) -> list[Outcome]:
    """Plan and execute every due item of the company at `now`, as the flow does; the items done."""
    store.plan(book.engine, CATALOG, now, [company_id])
    outcomes = [
        asyncio.run(execute(book.engine, CATALOG, item, now, delete_connection=delete_connection,
                                  purger=NoLocalStore(), worker="property"))
        for item in store.due_items(book.engine, now, company_ids=[company_id])
    ]
    return [o for o in outcomes if o.status == "done"]


retention = st.tuples(st.just("retention"), st.integers(0, 45))
revoke = st.tuples(st.just("revoke"), st.sampled_from(["dashboard", "lending"]))
step = st.one_of(_ops(), retention, retention, revoke)


def check(book, company_id: str, names: dict[str, str], model: Model, now) -> int:
    """One retention run at `now`: each item it executes was covered by no active consent (per the model)."""
    covered = model.pairs(only_linked=False)
    done = retention_run(book, company_id, now)
    executed = {i["id"]: i for i in store.items(book.engine, company_id, "done")}
    for outcome in done:
        item = executed[outcome.item_id]
        if item["scope"] == "codat_connection":
            assert not any(conn == names[item["connection_id"]] for conn, _ in covered), item
        else:
            assert not any(data_type == item["data_type"] for _, data_type in covered), item
    return len(done)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=12), gaps=st.lists(st.integers(0, 240), min_size=12, max_size=12))
def test_no_executed_deletion_covers_what_an_active_consent_covers(ledger, steps, gaps):  # noqa: F811
    company_id, ids = new_company(ledger)
    names = {v: k for k, v in ids.items()}
    model = Model()
    at = T0
    executed = 0
    # Dashboard and Lending sharing the accounting connection first, so revocations have something to delete
    shared = [("grant", "dashboard", [], ["acct"]), ("grant", "lending", [], ["acct", "bank1"])]
    for op, gap in zip(shared + steps, [0, 0, *gaps], strict=False):
        at = at + timedelta(hours=gap)
        if op[0] == "retention":
            at = at + timedelta(days=op[1])
            executed += check(ledger, company_id, names, model, at)
            if any(i["scope"] == "codat_connection" for i in store.items(ledger.engine, company_id, "done")):
                break  # a connection deleted at Codat is gone: the reference model knows no such thing
            continue
        valid = model.apply(op)
        try:
            run(ledger, company_id, ids, op, at)
        except ConsentError:
            assert not valid
            continue
        assert valid
    else:
        executed += check(ledger, company_id, names, model, at + timedelta(days=60))  # everything due by then
    event(f"deletions executed: {min(executed, 3)}{'+' if executed > 3 else ''}")
    receipts = store.receipts(ledger.engine, company_id)
    assert len(receipts) == len({r["item_id"] for r in receipts})  # one receipt per item, ever
