"""The Consent API: one FastAPI app over the ledger, for products (JSON under /v1, Bearer keys) and, in the
same app, the hosted consent journey customers click through.

`create_app` takes what it serves (engine, catalog, signing secret); `consent api serve` builds them from
the settings. The routes are plain `def`s: the ledger's calls block on the database, and FastAPI runs
them in its thread pool.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine, select

from consent_lifecycle.api import access, consents, holds, journey, problems
from consent_lifecycle.catalog import Catalog
from consent_lifecycle.db.models import ApiSecret
from consent_lifecycle.ledger import Ledger
from consent_lifecycle.ledger.writes import OnChange
from consent_lifecycle.settings import Settings

VERSION = "1.0.0"
DESCRIPTION = """\
Consent as products and customers reach it. A product asks before each read (`POST /v1/access/check`),
reports what it read, and records what its customers consent to; an admin key also manages legal holds.
Send a key from `consent api-keys create` as `Authorization: Bearer KEY`. Every POST takes an
`Idempotency-Key` header: a replay answers as the first request did and writes nothing. Errors are
`application/problem+json` naming the bad field or value; nothing is written on an error.
"""


def signing_secret(engine: Engine) -> bytes:
    """The database's signing secret (made by migration 0007): every worker and host signs alike."""
    with engine.connect() as db:
        value = db.execute(select(ApiSecret.value).where(ApiSecret.name == "signing")).scalar_one()
    return value.encode()


def create_app(
    engine: Engine,
    catalog: Catalog,
    *,
    settings: Settings | None = None,
    secret: bytes | None = None,
    on_change: OnChange | None = None,
) -> FastAPI:
    app = FastAPI(title="consent-lifecycle Consent API", version=VERSION, description=DESCRIPTION)
    app.state.engine = engine
    app.state.catalog = catalog
    app.state.settings = settings or Settings()
    app.state.ledger = Ledger(engine, catalog, on_change=on_change)
    app.state.secret = secret or signing_secret(engine)
    problems.install(app)
    for router in (access.router, consents.router, holds.router, journey.router):  # the hot path first
        app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    return app
