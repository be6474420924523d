"""Admin routes under `/_sandbox/` (not Codat's): clock, connection status, faults, limits, reset, counters.

They need the API key like every route, but are neither rate limited, faulted nor counted.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from codat_sandbox.api import json_response, parse_json
from codat_sandbox.clock import parse_iso
from codat_sandbox.errors import ApiError
from codat_sandbox.faults import FaultSettings
from codat_sandbox.state import Sandbox

router = APIRouter(prefix="/_sandbox")

MAX_COMPANIES = 1_000_000


def sandbox(request: Request) -> Sandbox:
    return request.app.state.sandbox


def bad_field(field: str, message: str) -> ApiError:
    """A 400 naming the field of an admin body that was wrong."""
    return ApiError(400, f"{field}: {message}", errors=[(field, message)], validator="SandboxAdmin")


async def body_object(request: Request, *, required: bool = True) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise bad_field("body", "a JSON object is required")
        return {}
    try:
        data = parse_json(raw)
    except ValueError:
        raise bad_field("body", "not valid JSON") from None
    if not isinstance(data, dict):
        raise bad_field("body", "must be a JSON object")
    return data


def _int(data: dict[str, Any], name: str, low: int, high: int | None = None) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        raise bad_field(
            name, f"must be an integer >= {low}" + (f" and <= {high}" if high is not None else "")
        )
    return value


@router.get("/clock")
async def get_clock(request: Request) -> Response:
    return json_response(sandbox(request).clock.as_json())


@router.post("/clock")
async def set_clock(request: Request) -> Response:
    sb = sandbox(request)
    data = await body_object(request)
    if "now" not in data:
        raise bad_field("now", "is required: an ISO 8601 time, or null for real time")
    value = data["now"]
    before = sb.world.now_text()
    if value is None:
        sb.clock.set(None)
    else:
        try:
            sb.clock.set(parse_iso(value))
        except (ValueError, TypeError):
            raise bad_field("now", f"{value!r} is not an ISO 8601 time") from None
    await asyncio.to_thread(sb.clock_moved, before)  # the scheduler may run for seconds
    return json_response(sb.clock.as_json())


@router.post("/clock/advance")
async def advance_clock(request: Request) -> Response:
    sb = sandbox(request)
    data = await body_object(request)
    seconds = data.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise bad_field("seconds", "is required: a number of seconds")
    before = sb.world.now_text()
    sb.clock.advance(seconds)
    await asyncio.to_thread(sb.clock_moved, before)  # the scheduler may run for seconds
    return json_response(sb.clock.as_json())


@router.post("/connections/{connectionId}/deauthorize")
async def deauthorize(request: Request, connectionId: str) -> Response:
    return await _set_status(sandbox(request), connectionId, "deauthorize")


@router.post("/connections/{connectionId}/reconnect")
async def reconnect(request: Request, connectionId: str) -> Response:
    return await _set_status(sandbox(request), connectionId, "reconnect")


async def _set_status(sb: Sandbox, connection_id: str, action: str) -> Response:
    """The world tells the change as a Codat event; its delivery happens off this request."""
    sb.world.settle()
    return json_response(sb.world.set_connection_status(connection_id, action))


@router.get("/faults")
async def get_faults(request: Request) -> Response:
    return json_response(sandbox(request).faults.settings.as_json())


@router.post("/faults")
async def set_faults(request: Request) -> Response:
    sb = sandbox(request)
    data = await body_object(request, required=False)
    try:
        settings = FaultSettings.from_json(data)
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        raise bad_field(field, message) from None
    sb.faults.configure(settings)
    return json_response(settings.as_json())


def _limits(sb: Sandbox) -> dict[str, int]:
    return {"rate_limit_per_minute": sb.rate.per_minute, "concurrent_per_company": sb.concurrency.per_company}


@router.get("/limits")
async def get_limits(request: Request) -> Response:
    return json_response(_limits(sandbox(request)))


@router.post("/limits")
async def set_limits(request: Request) -> Response:
    sb = sandbox(request)
    data = await body_object(request)
    unknown = sorted(set(data) - {"rate_limit_per_minute", "concurrent_per_company"})
    if unknown:
        raise bad_field(unknown[0], "unknown limit (known: rate_limit_per_minute, concurrent_per_company)")
    per_minute = _int(data, "rate_limit_per_minute", 1)
    concurrent = _int(data, "concurrent_per_company", 1)
    if per_minute is not None:
        sb.rate.configure(per_minute)
    if concurrent is not None:
        sb.concurrency.per_company = concurrent
    return json_response(_limits(sb))


@router.post("/reset")
async def reset(request: Request) -> Response:
    sb = sandbox(request)
    data = await body_object(request, required=False)
    unknown = sorted(set(data) - {"companies", "seed"})
    if unknown:
        raise bad_field(unknown[0], "unknown reset option (known: companies, seed)")
    companies = _int(data, "companies", 0, MAX_COMPANIES)
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise bad_field("seed", "must be an integer")
    sb.reset(companies, seed)
    return json_response(
        {"companies": sb.world.company_count, "seed": sb.world.seed, "now": sb.clock.as_json()["now"]}
    )


@router.get("/requests")
async def get_requests(request: Request) -> Response:
    return json_response(sandbox(request).counters.as_json())


@router.delete("/requests")
async def clear_requests(request: Request) -> Response:
    sandbox(request).counters.clear()
    return Response(status_code=204)
