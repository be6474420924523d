"""The expiry scan's I/O steps: write a batch to the snapshot (and classify it), queue and deliver notices."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from consent_lifecycle.catalog import load_catalog
from consent_lifecycle.clock import iso
from consent_lifecycle.db import snapshot as store
from consent_lifecycle.expiry import classify
from consent_lifecycle.notify import outbox
from consent_lifecycle.notify.channels import channel_from_settings
from consent_lifecycle.snapshot import Observation
from tasks.resources import engine, settings

BATCH = 500
REPORT_COLUMNS = [
    "company_id",
    "connection_id",
    "platform_name",
    "source_type",
    "status",
    "expiry_class",
    "expires_at",
    "threshold_days",
]


@task(cache_policy=NO_CACHE)
def scan_batch(observation: Observation, now: datetime, dry_run: bool) -> tuple[dict[str, int], pd.DataFrame]:
    """Upsert one batch (unless `dry_run`) in one transaction and classify its connections at `now`."""
    change, scanned = store.scan_observation(engine(), observation, now, dry_run=dry_run)
    return change.as_dict(), classify(scanned, load_catalog(settings().catalog), now)


@task(cache_policy=NO_CACHE)
def queue_notifications(planned: pd.DataFrame, now: datetime) -> int:
    """Put each planned notice in the outbox once (its key is unique): returns how many were new."""
    channel = "webhook" if settings().notify_webhook_url else "file"
    rows = [
        {
            "key": row["key"],
            "company_id": row["company_id"],
            "connection_id": row["connection_id"],
            "kind": row["kind"],
            "channel": channel,
            "created_at": now,
            "due_at": now,
            "payload": {
                "threshold_days": None if pd.isna(row["threshold_days"]) else int(row["threshold_days"]),
                "expires_at": iso(row["expires_at"]) if pd.notna(row["expires_at"]) else None,
                "link": row["link"],
            },
        }
        for row in planned.to_dict("records")
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
