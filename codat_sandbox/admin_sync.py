"""Admin routes of the sandbox's syncs (not Codat's): the sync scheduler's settings, and changes Codat's
customers make outside the API, which reconciliation has to find without being told: sync settings edited
in the Portal (no event) and a pull of a type nobody asked for (Codat reports it with read.completed)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from codat_sandbox.admin import bad_field, body_object, sandbox
from codat_sandbox.api import json_body, json_response

router = APIRouter(prefix="/_sandbox")


@router.get("/scheduler")
async def get_scheduler(request: Request) -> Response:
    return json_response(sandbox(request).scheduler.as_json())


@router.post("/scheduler")
async def set_scheduler(request: Request) -> Response:
    """`{"enabled": bool, "failure_rate": 0..1}`: run scheduled syncs when the clock moves forward, with
    that fraction of their pulls failing."""
    scheduler = sandbox(request).scheduler
    data = await body_object(request)
    unknown = sorted(set(data) - {"enabled", "failure_rate"})
    if unknown:
        raise bad_field(unknown[0], "unknown scheduler setting (known: enabled, failure_rate)")
    enabled, rate = data.get("enabled"), data.get("failure_rate")
    if enabled is not None and not isinstance(enabled, bool):
        raise bad_field("enabled", "must be a boolean")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1
    ):
        raise bad_field("failure_rate", "must be a number between 0 and 1")
    if enabled is not None:
        scheduler.enabled = enabled
    if rate is not None:
        scheduler.failure_rate = float(rate)
    return json_response(scheduler.as_json())


@router.post("/companies/{companyId}/syncSettings")
async def edit_sync_settings(request: Request, companyId: str) -> Response:
    """Codat's sync settings body, applied as a Portal edit: no event, no request counted."""
    world = sandbox(request).world
    world.company(companyId)
    world.set_sync_settings(companyId, await json_body(request))
    return Response(status_code=204)


@router.post("/companies/{companyId}/pulls")
async def record_pull(request: Request, companyId: str) -> Response:
    """`{"dataType", "connectionId"}`: a pull completed now on that connection, told as read.completed."""
    world = sandbox(request).world
    world.settle()
    return json_response(world.record_pull(companyId, await body_object(request)))
