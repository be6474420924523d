"""Why an access check answered as it did: stable snake_case codes, in the order they are tested, and one
sentence per code for people (the API's `reason` message).

A check asks: may `product` read `data_type` on connection `connection_id` of company `company_id` at a
time? The first code whose condition holds is the answer; `permitted` is the only one that permits.
"""

from __future__ import annotations

#: code -> sentence template (fields: company_id, product, connection_id, data_type), in the order tested
REASONS: dict[str, str] = {
    "unknown_company": "company {company_id} is not in the snapshot",
    "connection_not_of_company": "connection {connection_id} is not a connection of company {company_id}",
    "no_consent": "company {company_id} never granted {product}",
    "consent_revoked": "company {company_id} revoked its consent to {product}",
    "data_type_not_consented": "{product}'s consent of company {company_id} does not cover {data_type}",
    "connection_not_consented": (
        "{product}'s consent of company {company_id} does not cover connection {connection_id}"
    ),
    "data_type_not_on_connection": "connection {connection_id} does not carry {data_type} (another source type)",
    "connection_not_linked": "connection {connection_id} is not Linked (or was deleted at Codat)",
    "connection_expired": "the consent of connection {connection_id} has expired (re-consent needed)",
    "permitted": "{product} may read {data_type} on connection {connection_id} of company {company_id}",
}
CODES = tuple(REASONS)
REFUSALS = CODES[:-1]


def explain(code: str, company_id: str, product: str, connection_id: str, data_type: str) -> str:
    """The sentence for `code`, filled in."""
    return REASONS[code].format(
        company_id=company_id, product=product, connection_id=connection_id, data_type=data_type
    )
