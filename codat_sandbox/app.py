"""`create_app(config)`: the sandbox as a FastAPI app."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from codat_sandbox import admin, admin_sync, admin_webhooks, api
from codat_sandbox.config import SandboxConfig
from codat_sandbox.errors import ApiError, error_response, from_api_error
from codat_sandbox.middleware import SandboxGuard
from codat_sandbox.state import Sandbox

log = logging.getLogger(__name__)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return from_api_error(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"No resource at {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    items = [(".".join(str(p) for p in err.get("loc", ())), str(err.get("msg"))) for err in exc.errors()]
    return error_response(
        400,
        "The request is not valid: " + "; ".join(f"{i}: {m}" for i, m in items),
        errors=items,
        validator="RequestValidator",
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error(
        "sandbox error on %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc
    )
    return error_response(500)


def create_app(config: SandboxConfig) -> FastAPI:
    """A FastAPI app serving the Codat routes and the `/_sandbox/` admin routes over a freshly seeded (or
    reopened, for a `state_path`) world. `app.state.sandbox` holds its state."""
    sandbox = Sandbox(config)
    app = FastAPI(title="Codat sandbox", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.sandbox = sandbox
    app.include_router(api.router)
    app.include_router(api.extensions)
    app.include_router(admin.router)
    app.include_router(admin_webhooks.router)
    app.include_router(admin_sync.router)
    codat_routes = [*api.router.routes, *api.extensions.routes]
    sandbox.api_routes = [r for r in codat_routes if isinstance(r, APIRoute)]
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(SandboxGuard, sandbox=sandbox)
    return app
