"""Product reads through the API: ask before reading (`check`, or `checks` for many pairs in one call) and
report what was read (`record`, `records`). A product key asks and reports for its own product only.

Checks write nothing, so they take no Idempotency-Key: asking again is always safe. They are the hot path
(a product asks before each read): one statement and plain Python per check (`check_one`); the batch
form decides set-wise (`check_access`) and answers with orjson, not FastAPI's encoder.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import orjson
import pandas as pd
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import AwareDatetime, Field

from consent_lifecycle.access import CODES, check_access, check_one, explain, record_accesses
from consent_lifecycle.access.check import CHECK_COLUMNS
from consent_lifecycle.api.auth import CallerDep, require_product
from consent_lifecycle.api.bodies import Body, Key, Uuid, moment
from consent_lifecycle.api.idempotency import answer_once
from consent_lifecycle.api.keys import Caller
from consent_lifecycle.api.problems import Problem
from consent_lifecycle.clock import iso, utcnow

router = APIRouter(prefix="/v1/access", tags=["access"])
MAX_BATCH = 100_000


class Check(Body):
    company_id: Uuid
    product: Key
    connection_id: Uuid
    data_type: Key = Field(description="Codat data type key.")
    at: AwareDatetime | None = Field(None, description="Decide as of this time (default: now).")


class CheckAnswer(Check):
    permitted: bool
    reason: str = Field(description="Why: " + ", ".join(CODES) + ".")
    message: str = Field(description="The reason in words.")


class CheckResults(Body):
    results: list[CheckAnswer]


class Checks(Body):
    checks: Annotated[list[Check], Field(min_length=1, max_length=MAX_BATCH)]


class Record(Body):
    company_id: Uuid
    product: Key
    connection_id: Uuid | None = None
    data_type: Key
    at: AwareDatetime | None = Field(None, description="When the read happened (default: now).")


class Records(Body):
    records: Annotated[list[Record], Field(min_length=1, max_length=MAX_BATCH)]


def _own(who: Caller, products: list[str], what: str) -> None:
    """A product key asks and reports for its own product only: 403 naming the first other one."""
    if who.admin:
        return
    for index, product in enumerate(products):
        if product != who.product:
            raise Problem(403, f"{what}[{index}]: API key {who.name!r} acts for product {who.product!r}, "
                               f"not {product!r}")


@router.post(
    "/check",
    summary="May a product read a data type on a connection of a company now? Yes or no, and why",
    description="`reason` is one of: " + ", ".join(f"`{code}`" for code in CODES) + "; `message` says it in words.",
)
async def check(request: Request, body: Check, who: CallerDep) -> CheckAnswer:
    """`async`: a check at now is one short statement, run on the event loop as the key's lookup is (a
    thread pool hop per request cost more than the check itself, and widened the latency's tail); a check
    at another time replays the ledger, in the thread pool."""
    require_product(who, body.product)
    state = request.app.state
    decide = partial(
        check_one, state.engine, state.catalog, body.company_id, body.product, body.connection_id,
        body.data_type, now=utcnow(), at=body.at,
    )
    decision = decide() if body.at is None else await run_in_threadpool(decide)
    return CheckAnswer(
        **body.__dict__, permitted=decision.permitted, reason=decision.reason, message=decision.message
    )


@router.post(
    "/checks", response_model=CheckResults, summary="Many access checks in one call, answered in order"
)
def checks(request: Request, body: Checks, who: CallerDep) -> Response:
    frame = pd.DataFrame([c.__dict__ for c in body.checks])
    _own(who, frame["product"].tolist(), "checks")
    if frame["at"].isna().all():
        frame = frame.drop(columns="at")
    state = request.app.state
    decided = check_access(state.engine, state.catalog, frame, utcnow())
    messages = [
        explain(code, c, p, n, d)
        for code, c, p, n, d in zip(
            decided["reason"], decided["company_id"], decided["product"], decided["connection_id"],
            decided["data_type"], strict=True,
        )
    ]
    results = decided.assign(message=messages)[[*CHECK_COLUMNS, "permitted", "reason", "message"]]
    # thousands of answers: encoded straight from the frame (FastAPI would validate each row again)
    return Response(orjson.dumps({"results": results.to_dict("records")}), media_type="application/json")


@router.post("/record", status_code=201, summary="Report that a product read a data type of a company")
def record(request: Request, body: Record, who: CallerDep) -> Response:
    require_product(who, body.product)
    return _record(request, who, [body], body.model_dump(mode="json"), single=True)


@router.post("/records", status_code=201, summary="Report many reads in one call (all written, or none)")
def records(request: Request, body: Records, who: CallerDep) -> Response:
    _own(who, [r.product for r in body.records], "records")
    return _record(request, who, body.records, body.model_dump(mode="json"), single=False)


def _record(request: Request, who: Caller, rows: list[Record], payload: Any, *, single: bool) -> Response:
    state = request.app.state

    def answer() -> tuple[int, Any]:
        now = utcnow()
        frame = pd.DataFrame([{**r.__dict__, "at": moment(r.at, now)} for r in rows])
        ids = record_accesses(state.engine, state.catalog, frame, now)
        written = [
            {**r.model_dump(mode="json"), "id": i, "at": iso(at)} for r, i, at in zip(rows, ids, frame["at"], strict=True)
        ]
        return 201, written[0] if single else {"records": written}

    return answer_once(request, who, payload, answer)

