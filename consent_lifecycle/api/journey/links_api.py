"""`POST /v1/companies/{company_id}/journey-links`: a product (or an admin) makes the signed, expiring link it
sends its customer: to one product's confirm page (`product`), or to the company's manage page (no product).
The URL is on the setting CONSENT_JOURNEY_BASE_URL when set, else on the request's base URL.

A product key makes links for its own product only (403 otherwise), and the manage link, where the customer
sees and changes all their consents themselves.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field
from sqlalchemy import select

from consent_lifecycle.api.auth import CallerDep, require_product
from consent_lifecycle.api.bodies import Body, CompanyId, Key
from consent_lifecycle.api.idempotency import answer_once
from consent_lifecycle.api.journey.links import DEFAULT_TTL, MAX_TTL, make_link
from consent_lifecycle.api.problems import Problem
from consent_lifecycle.clock import iso, utcnow
from consent_lifecycle.db.models import Company

router = APIRouter(prefix="/v1/companies/{company_id}", tags=["journey"])


class JourneyLinkBody(Body):
    product: Key | None = Field(
        None, description="A product key: the link opens that product's confirm page. Default: the manage page."
    )
    ttl_seconds: int | None = Field(
        None, ge=60, le=int(MAX_TTL.total_seconds()),
        description=f"How long the link works (default {DEFAULT_TTL.days} days, at most {MAX_TTL.days} days).",
    )


@router.post("/journey-links", status_code=201, summary="A signed, expiring link to the customer's consent pages")
def create_journey_link(
    request: Request, company_id: CompanyId, who: CallerDep, body: JourneyLinkBody | None = None
) -> Response:
    body = body or JourneyLinkBody()
    state = request.app.state
    if body.product is not None:
        require_product(who, body.product)
        state.catalog.product(body.product)  # 404 naming an unknown product
    with state.engine.connect() as db:
        known = db.execute(
            select(Company.id).where(Company.id == company_id, Company.deleted_at.is_(None))
        ).one_or_none()
    if known is None:
        raise Problem(404, f"unknown company {company_id}: not in the snapshot (run `consent sync`)")

    def answer() -> tuple[int, Any]:
        ttl = timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else DEFAULT_TTL
        token, expires_at = make_link(state.secret, company_id, body.product, utcnow(), ttl)
        if body.product is None:
            page = request.url_for("journey_manage", company_id=company_id)
        else:
            page = request.url_for("journey_confirm", company_id=company_id, product=body.product)
        url = str(page.include_query_params(token=token))
        public = state.settings.journey_base_url
        if public:  # behind a proxy or on another host name than the API's clients use
            url = public.rstrip("/") + url.removeprefix(str(request.base_url).rstrip("/"))
        return 201, {"company_id": company_id, "product": body.product, "url": url, "expires_at": iso(expires_at)}

    return answer_once(request, who, body.model_dump(mode="json"), answer)
