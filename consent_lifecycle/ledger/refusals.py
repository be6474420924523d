"""Why the ledger refuses a write, each reason worded once.

The single writes raise these as ConsentError; the bulk pipeline (`Ledger.grant_many`) records them per
grant and raises or skips them. Both build the message here, so a grant refused one way or the other
reads the same.
"""

from __future__ import annotations

from datetime import datetime

from consent_lifecycle.clock import as_utc, iso
from consent_lifecycle.ledger.errors import ConsentError

NO_WORDING_VERSION = "a grant needs the wording version the customer saw"


def aware(value: datetime) -> datetime:
    """`value` in UTC; refused when it has no time zone."""
    if value.tzinfo is None:
        raise ConsentError(f"time {value.isoformat()} has no time zone: give it in UTC (e.g. with a Z)")
    return as_utc(value)


def unknown_company(company_id: str) -> str:
    return f"unknown company {company_id}: not in the snapshot (run `consent sync` to read it from Codat)"


def company_deleted(company_id: str, deleted_at: datetime) -> str:
    return f"company {company_id} was deleted at Codat on {iso(deleted_at)}"


def already_granted(product: str, company_id: str) -> str:
    return f"product {product!r} is already granted for company {company_id}; use `consent extend`"


def earlier_than_last(at: datetime, product: str, company_id: str, last: datetime) -> str:
    """An event dated before the consent's last one: the ledger is a history, not a draft."""
    return (
        f"--at {iso(at)} is earlier than the last event of {product!r} for company {company_id} ({iso(last)})"
    )


def not_active(action: str, product: str, company_id: str, *, revoked: bool) -> str:
    state = "was revoked" if revoked else "was never granted"
    return f"cannot {action} {product!r} for company {company_id}: it {state}"


def no_linked_connection(company_id: str, source_types: str, product: str) -> str:
    """No default scope: `source_types` are the kinds the product's required types come from, '/'-joined."""
    return (
        f"company {company_id} has no Linked {source_types} connection for product {product!r}; "
        "link one (then `consent sync`) or name one with --connection"
    )
