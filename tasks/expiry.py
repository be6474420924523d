"""The expiry scan's I/O steps: scan batches (write to the snapshot, classify, plan), queue and deliver notices."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run

from consent_lifecycle.catalog import Catalog, load_catalog
from consent_lifecycle.clock import iso
from consent_lifecycle.expiry import classify
from consent_lifecycle.expiry.scan import BatchScan
from consent_lifecycle.notify import outbox
from consent_lifecycle.notify.channels import channel_from_settings
from consent_lifecycle.snapshot import Observation, observe_dicts, store
from tasks.resources import codat_client, engine, settings

BATCH = 500


def _scan(observation: Observation, now: datetime, dry_run: bool, catalog: Catalog) -> BatchScan:
    """Upsert one observation (unless `dry_run`) in one transaction, classify it at `now`, plan its notices."""
    change, scanned = store.scan_observation(engine(), observation, now, dry_run=dry_run)
    return BatchScan.of(change.as_dict(), classify(scanned, catalog, now), now, observation.codat_requests)


@task(cache_policy=NO_CACHE)
def scan_batch(observation: Observation, now: datetime, dry_run: bool) -> BatchScan:
    """Scan one fetched batch: write it (unless `dry_run`) in one transaction, classify, plan notices."""
    return _scan(observation, now, dry_run, load_catalog(settings().catalog))


def _pages_run_name() -> str:
    pages = task_run.parameters["pages"]
    return f"scan-company-pages-{pages[0]}-{pages[-1]}"


@task(cache_policy=NO_CACHE, task_run_name=_pages_run_name)
async def scan_pages(pages: list[int], page_size: int, now: datetime, dry_run: bool) -> BatchScan:
    """Fetch `pages` of companies (all in flight within the client's bound) and scan each as it arrives,
    in a worker thread, while the others download: one transaction per page."""
    catalog = load_catalog(settings().catalog)

    scanned: dict[int, BatchScan] = {}
    async with codat_client() as codat:
        async for number, companies in codat.company_pages_as_dicts(pages, page_size=page_size):
            observation = await asyncio.to_thread(observe_dicts, companies)
            del companies  # the page's dicts: only its frames are kept while it is written
            scanned[number] = await asyncio.to_thread(_scan, observation, now, dry_run, catalog)
        requests = codat.requests_sent
    combined = BatchScan.combine([scanned[number] for number in sorted(scanned)])
    return replace(combined, codat_requests=requests)


@task(cache_policy=NO_CACHE)
def queue_notifications(planned: pd.DataFrame, now: datetime) -> int:
    """Put each planned notice in the outbox once (its key is unique): returns how many were new."""
    channel = "webhook" if settings().notify_webhook_url else "file"
    thresholds = planned["threshold_days"].astype("Int64").astype(object).where(planned["threshold_days"].notna(), None)
    expires = planned["expires_at"].map(iso, na_action="ignore").astype(object)
    expires = expires.where(planned["expires_at"].notna(), None)
    rows = [
        {
            "key": key,
            "company_id": company_id,
            "connection_id": connection_id,
            "kind": kind,
            "channel": channel,
            "created_at": now,
            "due_at": now,
            "payload": {
                "threshold_days": None if threshold is None else int(threshold),
                "expires_at": expires_at,
                "link": link,
            },
        }
        for key, company_id, connection_id, kind, threshold, expires_at, link in zip(
            planned["key"], planned["company_id"], planned["connection_id"], planned["kind"], thresholds,
            expires, planned["link"], strict=True,
        )
    ]
    with engine().begin() as db:
        return outbox.queue(db, rows, now)


@task(cache_policy=NO_CACHE)
def deliver_notifications(now: datetime) -> dict[str, Any]:
    """Send what the outbox holds due, at most once per key (claim, send, mark)."""
    totals: dict[str, int] = {}
    with channel_from_settings(settings()) as channel:
        while True:  # batch after batch until nothing due is left (a failed send is due again only later)
            batch = outbox.deliver(engine(), channel, now, worker=outbox.default_worker(), limit=BATCH)
            totals = {key: totals.get(key, 0) + value for key, value in batch.items()}
            if batch["claimed"] < BATCH:
                return totals
