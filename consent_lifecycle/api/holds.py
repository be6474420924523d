"""Legal holds through the API (admin keys only): list, place, release. Holds block deletion, never consent."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from consent_lifecycle.api.auth import CallerDep, require_admin
from consent_lifecycle.api.bodies import CompanyId, HoldBody, Moment, moment
from consent_lifecycle.api.idempotency import answer_once
from consent_lifecycle.clock import utcnow
from consent_lifecycle.ledger import Ledger

router = APIRouter(prefix="/v1", tags=["legal holds"])
HoldId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The hold's id.")]


def _ledger(request: Request) -> Ledger:
    return request.app.state.ledger


@router.get("/companies/{company_id}/holds", summary="A company's legal holds")
def list_holds(
    request: Request, company_id: CompanyId, who: CallerDep,
    include_released: Annotated[bool, Query(description="Include released holds.")] = False,
) -> list[dict[str, Any]]:
    require_admin(who, "reading legal holds")
    ledger = _ledger(request)
    ledger.require_company(company_id)
    return ledger.holds(company_id, include_released=include_released)


@router.post("/companies/{company_id}/holds", status_code=201, summary="Place a legal hold on a company's data")
def add_hold(request: Request, company_id: CompanyId, body: HoldBody, who: CallerDep) -> Response:
    require_admin(who, "placing a legal hold")
    ledger = _ledger(request)

    def answer() -> tuple[int, Any]:
        hold_id = ledger.add_hold(
            company_id, data_type=body.data_type, reason=body.reason, actor=who.name, at=moment(body.at, utcnow())
        )
        return 201, _hold(ledger, hold_id, company_id)

    return answer_once(request, who, body.model_dump(mode="json"), answer)


@router.post("/holds/{hold_id}/release", summary="Release a legal hold")
def release_hold(request: Request, hold_id: HoldId, who: CallerDep, body: Moment | None = None) -> Response:
    require_admin(who, "releasing a legal hold")
    ledger = _ledger(request)
    body = body or Moment()

    def answer() -> tuple[int, Any]:
        ledger.release_hold(hold_id, at=moment(body.at, utcnow()))
        return 200, _hold(ledger, hold_id)

    return answer_once(request, who, body.model_dump(mode="json"), answer)


def _hold(ledger: Ledger, hold_id: int, company_id: str | None = None) -> dict[str, Any]:
    return next(h for h in ledger.holds(company_id, include_released=True) if h["hold_id"] == hold_id)
