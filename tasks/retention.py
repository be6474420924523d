"""retention-enforcement's I/O steps: plan deletion items, find what is due, execute a batch of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.variables import Variable

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.codat import CodatClient, CodatError
from consent_lifecycle.notify.outbox import default_worker
from consent_lifecycle.retention import store
from consent_lifecycle.retention.execute import execute
from consent_lifecycle.retention.explain import over_cap_message
from consent_lifecycle.retention.gate import KILL_SWITCH, kill_switch_enabled
from consent_lifecycle.retention.purge import SqlTablePurger
from consent_lifecycle.snapshot.store import company_names
from tasks.resources import codat_client, engine, settings


@task(cache_policy=NO_CACHE)
async def deletions_enabled() -> bool:
    """The operators' kill switch: the Prefect Variable `consent-deletions-enabled` (enabled when unset)."""
    return kill_switch_enabled(await Variable.aget(KILL_SWITCH, default=True))


@task(cache_policy=NO_CACHE)
def plan_deletions(now: datetime, company_ids: list[str] | None) -> store.Plan:
    """Open, cancel, hold and release deletion items for what no consent covers at `now` (idempotent)."""
    return store.plan(engine(), load_catalog(settings().catalog), now, company_ids)


@task(cache_policy=NO_CACHE)
def count_due(now: datetime, company_ids: list[str] | None) -> store.Due:
    """How many planned items are due at `now` and the highest id among them: a count, not the ids
    (there can be hundreds of thousands)."""
    return store.count_due(engine(), now, company_ids)


@task(cache_policy=NO_CACHE)
def explain_over_cap(now: datetime, company_ids: list[str] | None, due: int, max_deletions: int) -> str:
    """Why a run over the cap stops: its due items by product and top companies, and what to do next."""
    counts = store.due_counts(engine(), now, company_ids)
    names = company_names(engine(), sorted(set(counts["company_id"])))
    return over_cap_message(due, max_deletions, counts, names)


@task(cache_policy=NO_CACHE)
def due_batch(
    now: datetime,
    company_ids: list[str] | None,
    limit: int,
    max_id: int | None,
    after: tuple[datetime, int] | None = None,
) -> list[tuple[int, datetime]]:
    """The next `limit` due items (id, due_at) after `after`, of those `count_due` counted."""
    return store.due_batch(engine(), now, limit=limit, max_id=max_id, after=after, company_ids=company_ids)


@task(cache_policy=NO_CACHE)
async def execute_items(item_ids: list[int], now: datetime) -> list[dict[str, Any]]:
    """Execute each item in its own transaction (check, delete at Codat or purge locally, receipt)."""
    catalog = load_catalog(settings().catalog)
    purger = SqlTablePurger(settings().local_store_tables)
    worker = default_worker()
    async with codat_client() as codat:
        deleter = _deleter(codat)
        return [
            (
                await execute(
                    engine(), catalog, item_id, now, delete_connection=deleter, purger=purger, worker=worker
                )
            ).as_dict()
            for item_id in item_ids
        ]


def _deleter(codat: CodatClient):
    async def delete_connection(company_id: str, connection_id: str) -> int:
        try:
            return await codat.delete_connection(company_id, connection_id)
        except CodatError as exc:
            if exc.status_code == 404:  # already gone: what the item wanted
                return 404
            raise

    return delete_connection
