"""Errors as RFC 9457 problem details (`application/problem+json`): status, title, a detail naming the bad
field or value, and for bad bodies the list of `errors` (field and message each).

The ledger's refusals map by kind: NotFoundError 404, ConflictError 409, any other ConsentError 422.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from consent_lifecycle.catalog import CatalogError, UnknownProductError
from consent_lifecycle.ledger import ConflictError, ConsentError, NotFoundError

MEDIA_TYPE = "application/problem+json"
#: Codat's ids (companies, connections) are uuids
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
    409: "Conflict", 413: "Request too large", 422: "Unprocessable content", 500: "Internal server error",
}


class Problem(Exception):
    """Raised by a route to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers, extra


def problem_response(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def status_of(error: ConsentError | CatalogError) -> int:
    if isinstance(error, NotFoundError | UnknownProductError):
        return 404
    if isinstance(error, ConflictError):
        return 409
    return 422


def _field(location: tuple[Any, ...] | list[Any]) -> str:
    """A pydantic error location as the field a client wrote: `checks[2].data_type`, `as_of`."""
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "body"


def _validation_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for item in error.errors():
        field = _field(item.get("loc", ()))
        value = item.get("input")
        if item.get("ctx", {}).get("pattern") == UUID_PATTERN:
            item = {**item, "msg": "not a uuid"}
        shown = "" if isinstance(value, dict | list) or value is None else f" (got {value!r})"
        out.append({"field": field, "message": f"{item.get('msg', 'invalid')}{shown}"})
    return out


def install(app: FastAPI) -> None:
    """Answer every error of `app` as a problem document."""

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(ConsentError)
    async def _consent(_: Request, exc: ConsentError) -> JSONResponse:
        return problem_response(status_of(exc), str(exc))

    @app.exception_handler(CatalogError)
    async def _catalog(_: Request, exc: CatalogError) -> JSONResponse:
        return problem_response(status_of(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
        return problem_response(422, detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
        return problem_response(exc.status_code, detail, getattr(exc, "headers", None))
