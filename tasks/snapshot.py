"""Writes to and reads from the connection snapshot."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from consent_lifecycle.snapshot import Observation, store
from tasks.resources import engine


@task(cache_policy=NO_CACHE)
def write_snapshot(observation: Observation, now: datetime) -> store.SnapshotChange:
    """Upsert one observation in one transaction; counts of new, changed, vanished connections."""
    return store.apply_observation(engine(), observation, now)


@task(cache_policy=NO_CACHE)
def retire_unseen_companies(seen_since: datetime) -> int:
    """After a complete scan, mark companies Codat no longer lists (and their connections) as deleted."""
    return store.retire_unseen_companies(engine(), seen_since)


@task(cache_policy=NO_CACHE)
def snapshot_counts() -> list[dict[str, object]]:
    """Connections by source type and status, for the operator."""
    return store.connection_counts(engine())


@task(cache_policy=NO_CACHE)
def company_names(company_ids: list[str]) -> dict[str, str]:
    """The snapshot's company names of `company_ids`, to show beside the ids."""
    return store.company_names(engine(), company_ids)
