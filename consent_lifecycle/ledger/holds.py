"""Legal holds: a company's data (or one data type of it) kept from deletion until the hold is released.

A hold is placed under the company's lock, like every ledger write, so a deletion that checks for holds
under that lock (`consent_lifecycle.db.retention`) sees it or ran before it. Holds never change a consent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from consent_lifecycle.clock import iso
from consent_lifecycle.db.models import LegalHold
from consent_lifecycle.ledger.errors import ConflictError, ConsentError, NotFoundError
from consent_lifecycle.ledger.reads import company_connections
from consent_lifecycle.ledger.refusals import aware
from consent_lifecycle.ledger.scope import check_data_type_key


class Holds:
    """`Ledger`'s legal holds (it supplies `engine`)."""

    engine: Engine

    def add_hold(
        self, company_id: str, *, data_type: str | None = None, reason: str, actor: str, at: datetime
    ) -> int:
        """Hold a company's data (or one data type of it) against deletion. Holds never affect consent."""
        if data_type is not None:
            check_data_type_key(data_type)
        if not reason or not reason.strip():
            raise ConsentError("a legal hold needs a reason")
        with self.engine.begin() as db:
            company_connections(db, company_id, lock=True)
            result = db.execute(
                insert(LegalHold).values(
                    company_id=company_id,
                    data_type=data_type,
                    reason=reason,
                    placed_by=actor,
                    placed_at=aware(at),
                    released_at=None,
                )
            )
            return int(result.inserted_primary_key[0])

    def release_hold(self, hold_id: int, *, at: datetime) -> None:
        with self.engine.begin() as db:
            hold = db.execute(select(LegalHold.__table__).where(LegalHold.id == hold_id)).one_or_none()
            if hold is None:
                raise NotFoundError(f"no legal hold with id {hold_id}")
            if aware(at) < hold.placed_at:
                raise ConsentError(
                    f"--at {iso(aware(at))} is before legal hold {hold_id} was placed ({iso(hold.placed_at)})"
                )
            if hold.released_at is not None:
                raise ConflictError(f"legal hold {hold_id} was already released at {iso(hold.released_at)}")
            db.execute(update(LegalHold).where(LegalHold.id == hold_id).values(released_at=aware(at)))

    def holds(self, company_id: str | None = None, include_released: bool = False) -> list[dict[str, Any]]:
        query = select(LegalHold.__table__).order_by(LegalHold.id)
        if company_id is not None:
            query = query.where(LegalHold.company_id == company_id)
        if not include_released:
            query = query.where(LegalHold.released_at.is_(None))
        with self.engine.connect() as db:
            return [
                {
                    "hold_id": h.id,
                    "company_id": h.company_id,
                    "data_type": h.data_type,
                    "reason": h.reason,
                    "placed_by": h.placed_by,
                    "placed_at": iso(h.placed_at),
                    "released_at": iso(h.released_at),
                }
                for h in db.execute(query)
            ]
