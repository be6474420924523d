"""The consent ledger: append-only events plus the current state beside them, in one transaction each.

`Ledger` is one class put together from one mixin per concern: `writes` (grant, extend, reconfirm, revoke,
disconnect; every write locks the company first, so writes and deletions for one company happen in some
serial order), `bulk` (grant_many, set-wise), `holds` (legal holds) and `reads` (state, entitlements,
consents, show, history, coverage, the impact previews). What they share are plain functions: the events
in `events`, the lookups in `reads`, the refusals' wording in `refusals`.
"""

from __future__ import annotations

from sqlalchemy import Engine

from consent_lifecycle.catalog import Catalog
from consent_lifecycle.ledger.bulk import BulkGrants
from consent_lifecycle.ledger.holds import Holds
from consent_lifecycle.ledger.reads import Reads
from consent_lifecycle.ledger.writes import OnChange, Writes


class Ledger(Writes, BulkGrants, Holds, Reads):
    def __init__(self, engine: Engine, catalog: Catalog, on_change: OnChange | None = None) -> None:
        """`on_change` hears of each revocation and disconnection after it commits (the CLI wires Prefect
        events to it, so an automation can plan the deletions at once); what it raises is not the caller's
        problem: the change is recorded either way."""
        self.engine = engine
        self.catalog = catalog
        self.on_change = on_change
