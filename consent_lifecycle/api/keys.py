"""The Consent API's keys: made once, shown once, kept only as a SHA-256, found by it on every request.

A key is `clk_` and 43 random URL-safe characters (256 bits): a hash without salt or stretching is enough
for a secret that was never a password. A product key acts for one product; an admin key for every
product, and on legal holds. Keys are revoked, never deleted: the ledger names them as actors.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from consent_lifecycle.catalog import Catalog
from consent_lifecycle.clock import iso
from consent_lifecycle.db.engine import statement_connection
from consent_lifecycle.db.models import ApiKey
from consent_lifecycle.ledger import ConflictError, ConsentError, NotFoundError
from consent_lifecycle.ledger.scope import product_of

PREFIX = "clk_"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: the key's id and name (the actor recorded), its product, or admin."""

    key_id: int
    name: str
    product: str | None

    @property
    def admin(self) -> bool:
        return self.product is None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    engine: Engine, catalog: Catalog, *, product: str | None, name: str | None, now: datetime
) -> tuple[dict[str, Any], str]:
    """A new key for `product` (None: admin): its listing row and the key itself, which is never stored."""
    if product is not None:
        product_of(catalog, product)
    if name is not None and not NAME_PATTERN.fullmatch(name):
        raise ConsentError(
            f"key name {name!r}: use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter "
            "or digit"
        )
    key = PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as db:
        if name is None:
            name = _next_name(db, product or "admin")
        elif db.execute(select(ApiKey.id).where(ApiKey.name == name)).first() is not None:
            raise ConflictError(f"an API key named {name!r} exists already")
        db.execute(
            insert(ApiKey).values(
                name=name, product=product, admin=product is None, key_hash=digest(key),
                prefix=key[: len(PREFIX) + 4], created_at=now, revoked_at=None,
            )
        )
    return list_keys(engine, include_revoked=True, name=name)[0], key


def _next_name(db: Any, stem: str) -> str:
    """`stem-N`, the smallest N not taken (revoked keys keep their names: the ledger names them)."""
    taken = set(db.execute(select(ApiKey.name).where(ApiKey.name.like(f"{stem}-%"))).scalars())
    number = 1
    while f"{stem}-{number}" in taken:
        number += 1
    return f"{stem}-{number}"


#: the lookup of every request, as plain SQL per driver parameter style (building and compiling the
#: expression cost twice the access check it guards)
LOOKUP = {
    style: f"SELECT id, name, product FROM api_keys WHERE key_hash = {mark} AND revoked_at IS NULL"
    for style, mark in (("qmark", "?"), ("pyformat", "%s"), ("format", "%s"))
}


def find_caller(engine: Engine, key: str) -> Caller | None:
    """The caller a presented key stands for, or None when it is unknown or revoked."""
    if not key.startswith(PREFIX):
        return None
    with statement_connection(engine) as db:
        row = db.exec_driver_sql(LOOKUP[engine.dialect.paramstyle], (digest(key),)).first()
    return Caller(*row) if row is not None else None


def list_keys(engine: Engine, *, include_revoked: bool = False, name: str | None = None) -> list[dict[str, Any]]:
    query = select(ApiKey.id, ApiKey.name, ApiKey.product, ApiKey.admin, ApiKey.prefix, ApiKey.created_at,
                   ApiKey.revoked_at).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    if name is not None:
        query = query.where(ApiKey.name == name)
    with engine.connect() as db:
        return [
            {
                "name": r.name, "scope": "admin" if r.admin else "product", "product": r.product,
                "prefix": r.prefix, "created_at": iso(r.created_at), "revoked_at": iso(r.revoked_at),
            }
            for r in db.execute(query)
        ]


def revoke_key(engine: Engine, name: str, *, now: datetime) -> dict[str, Any]:
    with engine.begin() as db:
        row = db.execute(select(ApiKey.id, ApiKey.revoked_at).where(ApiKey.name == name)).first()
        if row is None:
            raise NotFoundError(f"no API key named {name!r}")
        if row.revoked_at is not None:
            raise ConflictError(f"API key {name!r} was already revoked at {iso(row.revoked_at)}")
        db.execute(update(ApiKey).where(ApiKey.id == row.id).values(revoked_at=now))
    return list_keys(engine, include_revoked=True, name=name)[0]
