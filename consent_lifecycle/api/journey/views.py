"""What the journey's pages show, as plain data: a company's connections (with their consent expiry), its
consents in plain words, what confirming a product would record, and a revocation's impact in sentences.

Reads take the engine and ledger; the decisions (`confirm_plan`, `impact_sentences`) are pure, with `now`
passed in. No function here reads another company's rows: every query is filtered by the page's company.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select

from consent_lifecycle.catalog import Catalog, Product
from consent_lifecycle.datatypes import DATA_TYPE_SOURCE, DATA_TYPES
from consent_lifecycle.db.models import Company, Connection
from consent_lifecycle.expiry import INPUT_COLUMNS, classify
from consent_lifecycle.ledger import ConsentView, Impact
from consent_lifecycle.ledger.scope import default_connections

_ORDER = {key: n for n, key in enumerate(DATA_TYPES)}
#: an expired or expiring Open Banking connection the customer can renew without re-authenticating
RENEWABLE = ("expired", "expiring")


@dataclass(frozen=True)
class CompanyFacts:
    id: str
    name: str
    #: the company's Codat Link URL: where a customer connects another package
    redirect: str
    #: its listed connections: CONNECTION_COLUMNS plus classify's expires_at, expiry_class, basis
    connections: pd.DataFrame


@dataclass(frozen=True)
class Plan:
    """What "Confirm" would record for a product: a grant, an extension, or nothing (`action` None, `why`).
    `optional`: the product's optional data types the customer may tick as well (carried by the connections
    in scope, not shared yet)."""

    action: str | None
    data_types: tuple[str, ...]
    connections: tuple[str, ...]
    why: str = ""
    optional: tuple[str, ...] = ()


def company_facts(engine: Engine, catalog: Catalog, company_id: str, now: datetime) -> CompanyFacts | None:
    """The company as the journey shows it; None when the snapshot does not know it (or Codat deleted it)."""
    columns = [
        Connection.id, Connection.company_id, Connection.source_type, Connection.status, Company.jurisdiction,
        Connection.created_at, Connection.last_sync_at, Connection.last_authorized_at,
        Connection.last_reconfirmed_at, Connection.platform_name, Connection.link_url, Connection.deleted_at,
    ]
    with engine.connect() as db:
        company = db.execute(
            select(Company.name, Company.redirect).where(Company.id == company_id, Company.deleted_at.is_(None))
        ).one_or_none()
        if company is None:
            return None
        rows = db.execute(
            select(*columns)
            .join(Company, Company.id == Connection.company_id)
            .where(Connection.company_id == company_id, Connection.deleted_at.is_(None))
            .order_by(Connection.source_type, Connection.platform_name, Connection.id)
        ).all()
    frame = pd.DataFrame.from_records(rows, columns=[c.key for c in columns])
    for column in ("created_at", "last_sync_at", "last_authorized_at", "last_reconfirmed_at", "deleted_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    if not frame.empty:
        classes = classify(frame[INPUT_COLUMNS], catalog, now)[["id", "expires_at", "expiry_class", "basis"]]
        frame = frame.merge(classes, on="id", how="left")
    else:
        frame = frame.assign(expires_at=pd.Series(dtype=object), expiry_class="", basis=None)
    return CompanyFacts(company_id, company.name, company.redirect, frame)


def ordered(data_types: Iterable[str]) -> list[str]:
    """Data types in Codat's order (accounting first, as the catalog lists them)."""
    return sorted(set(data_types), key=lambda k: (_ORDER.get(k, len(_ORDER)), k))


def confirm_plan(product: Product, consent: ConsentView | None, connections: pd.DataFrame) -> Plan:
    """A grant of the product's required data types on the company's Linked connections that carry them;
    or, for an active consent, an extension by what is new: required types it does not cover yet, and Linked
    connections carrying its data types that it does not use yet. Either offers the optional types the
    connections in scope carry. Nothing when nothing is new and no optional type is left to offer."""
    if consent is None or consent.status != "active":
        types = product.required
        chosen = default_connections(types, connections)
        if not chosen:
            sources = " or ".join(sorted({DATA_TYPE_SOURCE[t] for t in types}))
            return Plan(None, tuple(ordered(types)), (), f"first connect your {sources.lower()} platform")
        optional = _carried(product.optional, chosen, connections)
        return Plan("grant", tuple(ordered(types)), tuple(sorted(chosen)), optional=optional)
    shared = set(consent.data_types)
    new_types = product.required - shared
    carried = default_connections(frozenset(shared) | new_types, connections)
    new_connections = carried - set(consent.connections)
    optional = _carried(product.optional - shared, carried | set(consent.connections), connections)
    if not new_types and not new_connections and not optional:
        return Plan(None, (), (), "you already share everything this product needs")
    return Plan("extend", tuple(ordered(new_types)), tuple(sorted(new_connections)), optional=optional)


def _carried(data_types: Iterable[str], connection_ids: Iterable[str], connections: pd.DataFrame) -> tuple[str, ...]:
    """The data types some of `connection_ids` carries (by source type)."""
    sources = set(connections.loc[connections["id"].isin(list(connection_ids)), "source_type"])
    return tuple(ordered(t for t in data_types if DATA_TYPE_SOURCE[t] in sources))


def covers(consent: ConsentView | None, data_types: Iterable[str], connections: Iterable[str]) -> bool:
    """The active `consent` already covers these data types and connections: confirming them records nothing."""
    return (
        consent is not None and consent.status == "active"
        and set(data_types) <= set(consent.data_types) and set(connections) <= set(consent.connections)
    )


def phrase(name: str) -> str:
    """A display name inside a sentence: "Balance sheets" -> "balance sheets" (an acronym stays)."""
    return name if name[1:2].isupper() else name[:1].lower() + name[1:]


def words_list(items: Iterable[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def product_name(catalog: Catalog, key: str | None) -> str:
    product = catalog.products.get(key or "")
    return product.name if product else (key or "This product")


def type_phrases(catalog: Catalog, data_types: Iterable[str]) -> str:
    return words_list(phrase(catalog.describe(t).name) for t in ordered(data_types))


def impact_sentences(catalog: Catalog, impact: Impact, platforms: dict[str, str]) -> list[str]:
    """The impact of revoking `impact.product`, in plain words: what is deleted and when, what other
    products keep using, and which connections no product will use any more."""
    revoked = product_name(catalog, impact.product)
    out = []
    by_due: dict[datetime, set[str]] = {}
    for row in impact.delete:
        by_due.setdefault(pd.Timestamp(row["due_at"]).to_pydatetime(), set()).add(row["data_type"])
    for due, types in sorted(by_due.items()):
        days = max(0, round((due - impact.at).total_seconds() / 86400))
        out.append(f"{revoked}'s {type_phrases(catalog, types)} are deleted after {days} days, on {due:%Y-%m-%d}.")
    by_keeper: dict[tuple[str, ...], set[str]] = {}
    for row in impact.keep:
        by_keeper.setdefault(tuple(row["needed_by"]), set()).add(row["data_type"])
    for keepers, types in sorted(by_keeper.items()):
        names = words_list(product_name(catalog, k) for k in keepers)
        verb = "keeps" if len(keepers) == 1 else "keep"
        out.append(f"{names} {verb} using {type_phrases(catalog, types)}.")
    for connection_id in impact.connections_losing_all_consent:
        out.append(f"No product will use your {platforms.get(connection_id, 'connected')} connection any more.")
    if not impact.delete:
        out.append("Nothing is deleted: other products still need all of it.")
    return out


def consent_rows(
    catalog: Catalog, consents: list[ConsentView], facts: CompanyFacts
) -> list[dict[str, Any]]:
    """Each product of the catalog with the company's consent to it (or none yet), in plain words."""
    platforms = platform_names(facts)
    by_product = {c.product: c for c in consents}
    rows = []
    for product in catalog.products.values():
        consent = by_product.get(product.key)
        rows.append({
            "key": product.key,
            "name": product.name,
            "status": consent.status if consent else "not shared",
            "active": bool(consent and consent.status == "active"),
            "data_types": [catalog.describe(t) for t in ordered(consent.data_types)] if consent else [],
            "connections": [platforms.get(c, c) for c in consent.connections] if consent else [],
        })
    return rows


def platform_names(facts: CompanyFacts) -> dict[str, str]:
    """connection id -> "Xero (Accounting)"."""
    frame = facts.connections
    return {
        row["id"]: f"{row['platform_name']} ({row['source_type']})" for row in frame.to_dict("records")
    }


def connection_rows(facts: CompanyFacts) -> list[dict[str, Any]]:
    """Each connection with its status, consent expiry, class, and what the customer can do about it."""
    rows = []
    for row in facts.connections.to_dict("records"):
        expires = row.get("expires_at")
        klass = row.get("expiry_class") or ""
        renewable = row["source_type"] == "Banking" and klass in RENEWABLE
        rows.append({
            "id": row["id"],
            "platform": row["platform_name"],
            "source_type": row["source_type"],
            "status": row["status"],
            "expires_on": None if expires is None or pd.isna(expires) else f"{pd.Timestamp(expires):%Y-%m-%d}",
            "expiry_class": klass,
            "link_url": row["link_url"],
            "reconsent": renewable,
            # UK AISP: a reconfirmation renews consent; a Deauthorized connection needs a new authorization
            "reconfirm": renewable and row.get("basis") == "reconfirmation" and row["status"] == "Linked",
        })
    return rows
