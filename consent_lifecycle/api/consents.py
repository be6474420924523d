"""A company's consents through the API: read them (now or `as_of`), their history, the impact of a revoke
or disconnect; grant, extend, reconfirm, revoke, disconnect. The same ledger calls, rules and JSON as the
CLI's `consent show/history/impact/grant/...` with `--json`; the key's name is the actor, `api` the channel.

A product key reads and changes its own product's consent only (other products' consents and
entitlements are left out of what it reads), but may read any impact preview: what a revocation deletes
depends on what the other products keep.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import AwareDatetime

from consent_lifecycle.api.auth import CallerDep, require_product
from consent_lifecycle.api.bodies import (
    CompanyId,
    ConnectionId,
    DisconnectBody,
    GrantBody,
    Moment,
    Product,
    RevokeBody,
    moment,
)
from consent_lifecycle.api.idempotency import answer_once
from consent_lifecycle.api.keys import Caller
from consent_lifecycle.api.problems import Problem
from consent_lifecycle.clock import as_utc, utcnow
from consent_lifecycle.ledger import Ledger

router = APIRouter(prefix="/v1/companies/{company_id}", tags=["consents"])
CHANNEL = "api"
AsOf = Annotated[
    AwareDatetime | None, Query(description="The consents as they stood at this ISO 8601 time (with a time zone).")
]
At = Annotated[AwareDatetime | None, Query(description="Preview as of this ISO 8601 time (default: now).")]


def ledger_of(request: Request) -> Ledger:
    return request.app.state.ledger


def own_part(body: dict[str, Any], who: Caller) -> dict[str, Any]:
    """A company's consents as `who` may read them: all for an admin, its own product's for a product key."""
    if who.admin:
        return body
    mine = who.product
    return {
        **body,
        "consents": [c for c in body["consents"] if c["product"] == mine],
        "entitlements": [{**e, "products": [mine]} for e in body["entitlements"] if mine in e["products"]],
    }


@router.get("/consents", summary="A company's consents and entitlements (what may be pulled)")
def show(request: Request, company_id: CompanyId, who: CallerDep, as_of: AsOf = None) -> dict[str, Any]:
    when = as_utc(as_of) if as_of else None
    body = ledger_of(request).show(company_id, when, now=None if when else utcnow())
    return own_part(body, who)


@router.get("/history", summary="The ledger of a company's consent events, oldest first")
def history(request: Request, company_id: CompanyId, who: CallerDep) -> list[dict[str, Any]]:
    events = ledger_of(request).history(company_id)
    return events if who.admin else [e for e in events if e["product"] == who.product]


@router.get("/consents/{product}/impact", summary="What revoking a product would delete, when, and what it keeps")
def revoke_impact(
    request: Request, company_id: CompanyId, product: Product, who: CallerDep, at: At = None
) -> dict[str, Any]:
    when = as_utc(at) if at else utcnow()
    return ledger_of(request).impact_of_revoke(company_id, product, when).as_dict()


@router.get(
    "/connections/{connection_id}/impact", summary="What disconnecting a connection would delete and keep"
)
def disconnect_impact(
    request: Request, company_id: CompanyId, connection_id: ConnectionId, who: CallerDep, at: At = None
) -> dict[str, Any]:
    when = as_utc(at) if at else utcnow()
    return ledger_of(request).impact_of_disconnect(company_id, connection_id, when).as_dict()


def _consent_body(company_id: str, view: Any) -> dict[str, Any]:
    return {"company_id": company_id, **view.as_dict()}


@router.post("/consents/{product}", status_code=201, summary="Record the customer's consent to a product")
def grant(
    request: Request, company_id: CompanyId, product: Product, who: CallerDep, body: GrantBody | None = None
) -> Response:
    return _grant_or_extend("grant", request, company_id, product, who, body or GrantBody())


@router.post("/consents/{product}/extend", summary="Add data types or connections to a granted product")
def extend(
    request: Request, company_id: CompanyId, product: Product, who: CallerDep, body: GrantBody | None = None
) -> Response:
    return _grant_or_extend("extend", request, company_id, product, who, body or GrantBody())


def _grant_or_extend(
    action: str, request: Request, company_id: str, product: str, who: Caller, body: GrantBody
) -> Response:
    require_product(who, product)
    ledger = ledger_of(request)

    def answer() -> tuple[int, Any]:
        now = utcnow()
        default_wording = f"catalog-{ledger.catalog.version}" if action == "grant" else None
        view = getattr(ledger, action)(
            company_id, product, connections=body.connections, data_types=body.data_types,
            wording_version=body.wording_version or default_wording, actor=who.name, channel=CHANNEL,
            at=moment(body.at, now), recorded_at=now,
        )
        return (201 if action == "grant" else 200), _consent_body(company_id, view)

    return answer_once(request, who, body.model_dump(mode="json"), answer)


@router.post("/consents/{product}/reconfirm", summary="Record the customer's periodic (Open Banking) reconfirmation")
def reconfirm(
    request: Request, company_id: CompanyId, product: Product, who: CallerDep, body: Moment | None = None
) -> Response:
    require_product(who, product)
    body = body or Moment()

    def answer() -> tuple[int, Any]:
        now = utcnow()
        view = ledger_of(request).reconfirm(
            company_id, product, actor=who.name, channel=CHANNEL, at=moment(body.at, now), recorded_at=now
        )
        return 200, _consent_body(company_id, view)

    return answer_once(request, who, body.model_dump(mode="json"), answer)


@router.post("/consents/{product}/revoke", summary="Withdraw consent to a product; answers what it deletes and keeps")
def revoke(
    request: Request, company_id: CompanyId, product: Product, who: CallerDep, body: RevokeBody | None = None
) -> Response:
    require_product(who, product)
    body = body or RevokeBody()

    def answer() -> tuple[int, Any]:
        now = utcnow()
        effect = ledger_of(request).revoke(
            company_id, product, reason=body.reason, actor=who.name, channel=CHANNEL, at=moment(body.at, now),
            recorded_at=now,
        )
        return 200, effect.as_dict()

    return answer_once(request, who, body.model_dump(mode="json"), answer)


@router.post(
    "/connections/{connection_id}/disconnect",
    summary="Remove a connection from every product using it; answers what it deletes and keeps",
)
def disconnect(
    request: Request, company_id: CompanyId, connection_id: ConnectionId, who: CallerDep,
    body: DisconnectBody | None = None,
) -> Response:
    ledger = ledger_of(request)
    if not who.admin:  # the customer removes it in a product's UI: that product must be using it
        own = [c for c in ledger.consents(company_id) if c.product == who.product and c.status == "active"]
        if not any(connection_id in c.connections for c in own):
            raise Problem(
                403, f"API key {who.name!r}: product {who.product!r} has no active consent using connection "
                f"{connection_id}; disconnecting it needs that, or an admin key"
            )
    body = body or DisconnectBody()

    def answer() -> tuple[int, Any]:
        now = utcnow()
        effect = ledger.disconnect(
            company_id, connection_id, actor=who.name, channel=CHANNEL, at=moment(body.at, now),
            reason=body.reason, recorded_at=now,
        )
        return 200, effect.as_dict()

    return answer_once(request, who, body.model_dump(mode="json"), answer)
