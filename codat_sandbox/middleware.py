"""The guard in front of every route: API key, rate limits, injected faults, counters and rate headers.

Order for an API request: 401 without the right key; 429 past the per-minute window (Retry-After = the
seconds left in it); 429 past the concurrent requests for the company in the path (Retry-After 1); then
faults (latency, 429, 5xx, a timeout that sleeps then answers 504), all before the route runs, so a
faulted request has no side effect. Admin routes (`/_sandbox/...`) need the key and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codat_sandbox.clock import iso, utcnow
from codat_sandbox.errors import ApiError, error_response, from_api_error
from codat_sandbox.limits import Decision
from codat_sandbox.state import Sandbox

ADMIN_PREFIX = "/_sandbox"
log = logging.getLogger("codat_sandbox.app")


def rate_headers(decision: Decision) -> dict[str, str]:
    reset = utcnow().replace(microsecond=0) + timedelta(seconds=decision.retry_after)
    return {
        "X-Rate-Limit-Limit": str(decision.limit),
        "X-Rate-Limit-Remaining": str(decision.remaining),
        "X-Rate-Limit-Reset": iso(reset) or "",
    }


class SandboxGuard:
    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sandbox = self.sandbox
        path: str = scope["path"]
        auth = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        authorized = sandbox.authorized(auth)
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            if not authorized:
                await error_response(401)(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return

        key, params, route = sandbox.match(scope)
        client = (scope.get("client") or ("unknown", 0))[0]
        status = [500]

        async def respond(response) -> None:
            status[0] = response.status_code
            await response(scope, receive, send)

        if not authorized:
            await respond(error_response(401, headers=rate_headers(sandbox.rate.peek(client))))
            self._count(key, status[0])
            return
        decision = sandbox.rate.hit(client)
        headers = rate_headers(decision)
        if not decision.allowed:
            await respond(error_response(429, headers={**headers, "Retry-After": str(decision.retry_after)}))
            self._count(key, status[0])
            return
        company = params.get("companyId") if key else None
        if company is not None and not sandbox.concurrency.acquire(company):
            await respond(
                error_response(
                    429,
                    f"Too many concurrent requests for company {company}; at most "
                    f"{sandbox.concurrency.per_company} are allowed.",
                    headers={**headers, "Retry-After": "1"},
                )
            )
            self._count(key, status[0])
            return
        try:
            if key is not None and await self._fault(respond, headers):
                return
            extra = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
                await send(message)

            if route is None:  # no API route: the app answers (404, 405) as it does for any path
                await self.app(scope, receive, send_with_headers)
            else:
                await (await self._endpoint(route, params, scope, receive))(scope, receive, send_with_headers)
        finally:
            if company is not None:
                sandbox.concurrency.release(company)
            self._count(key, status[0])

    async def _endpoint(self, route: Any, params: dict[str, Any], scope: Scope, receive: Receive) -> Response:
        """The matched route's endpoint called directly, its errors answered as the app's handlers answer
        them. The route was matched above already: FastAPI's router would match it again and solve its
        dependencies (the endpoints take the request and str path params only), about a third of the
        sandbox's CPU per request, so under load the sandbox would be measured instead of the client."""
        try:
            return await route.endpoint(Request(scope, receive), **params)
        except ApiError as exc:
            return from_api_error(exc)
        except Exception as exc:  # as the app's catch-all handler: a 500, its traceback logged
            log.error(
                "sandbox error on %s %s: %s",
                scope["method"],
                scope["path"],
                type(exc).__name__,
                exc_info=exc,
            )
            return error_response(500)

    async def _fault(self, respond, headers: dict[str, str]) -> bool:
        settings = self.sandbox.faults.settings
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
        fault, code = self.sandbox.faults.draw()
        if fault is None:
            return False
        if fault == "429":
            await respond(
                error_response(429, headers={**headers, "Retry-After": str(settings.retry_after_seconds)})
            )
        elif fault == "5xx":
            await respond(error_response(code, headers=headers))
        else:
            await asyncio.sleep(settings.timeout_seconds)
            await respond(error_response(504, headers=headers))
        return True

    def _count(self, key: str | None, status: int) -> None:
        if key is not None:
            self.sandbox.counters.record(key, status)
