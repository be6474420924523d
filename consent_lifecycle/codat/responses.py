"""Reading Codat's answers: a body parsed and validated into a model in one pass, a page checked against
what was asked for, an error answer turned into a `CodatError`. Every failure names the call and why."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from consent_lifecycle.codat.errors import CodatError
from consent_lifecycle.codat.models import Company, ErrorMessage, LeanCompanyPage, Page

M = TypeVar("M", bound=BaseModel)

LEAN_COMPANY_PAGE = TypeAdapter(LeanCompanyPage)


def json_body(response: httpx.Response, method: str, path: str) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError):  # RecursionError: nested too deep for the parser
        snippet = response.text[:80]
        raise CodatError(
            f"response is not JSON (content-type {response.headers.get('content-type')!r}, body {snippet!r})",
            status_code=response.status_code,
            method=method,
            path=path,
        ) from None


def invalid_response(exc: ValidationError, response: httpx.Response, method: str, path: str) -> CodatError:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    value = first.get("input")
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return CodatError(
        f"invalid response: {where}: {first['msg']} (got {shown}){more}",
        status_code=response.status_code,
        method=method,
        path=path,
    )


def parse_model(response: httpx.Response, model: type[M], method: str, path: str) -> M:
    try:  # the common case, parsed and validated in one pass by pydantic-core (no Python objects between)
        return model.model_validate_json(response.content)
    except ValidationError:
        pass  # the body is not JSON, or not valid: the path below says why, exactly as it always has
    body = json_body(response, method, path)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid_response(exc, response, method, path) from None


def parse_with(response: httpx.Response, adapter: TypeAdapter[Any], method: str, path: str) -> Any:
    try:
        return adapter.validate_json(response.content)
    except ValidationError:
        pass
    body = json_body(response, method, path)
    try:
        return adapter.validate_python(body)
    except ValidationError as exc:
        raise invalid_response(exc, response, method, path) from None


def company_dicts(response: httpx.Response, number: int, size: int) -> list[dict[str, Any]]:
    """The companies of one `/companies` page as dicts (see `CodatClient.company_pages_as_dicts`)."""
    try:
        body = LEAN_COMPANY_PAGE.validate_json(response.content)
    except ValidationError:  # not JSON, not valid, or ids/times to normalise: the models say which
        page = parse_model(response, Page[Company], "GET", "/companies")
        check_page(page, number, size, "GET", "/companies")
        return [company.model_dump(mode="json", by_alias=True) for company in page.results]
    results = body.get("results", [])
    counts = PageCounts(body["pageNumber"], body["pageSize"], body["totalResults"], results)
    check_page(counts, number, size, "GET", "/companies")
    return results


class PageCounts(NamedTuple):
    """What `_check_page` reads of a page (a `Page` has the same attributes)."""

    page_number: int
    page_size: int
    total_results: int
    results: Sequence[Any]


def check_page(page: Page[Any] | PageCounts, number: int, size: int, method: str, path: str) -> None:
    """A page must be the one asked for, at the size asked for, and hold what `totalResults` promises at that
    size: a short page, or one claiming another size (the pages counted from it), loses data."""
    expected = max(0, min(size, page.total_results - (number - 1) * size))
    if page.page_number != number or len(page.results) != expected:
        raise CodatError(
            f"page {number} holds {len(page.results)} results (pageNumber {page.page_number}); "
            f"totalResults {page.total_results} at pageSize {size} means {expected}",
            method=method,
            path=path,
        )
    if page.page_size != size:
        raise CodatError(
            f"page {number} says pageSize {page.page_size}, but pageSize {size} was asked for",
            method=method,
            path=path,
        )


def error_from(response: httpx.Response, method: str, path: str) -> CodatError:
    try:
        body = ErrorMessage.model_validate(response.json())
        text = body.error or response.reason_phrase
        return CodatError(
            text,
            status_code=response.status_code,
            correlation_id=body.correlation_id,
            method=method,
            path=path,
            can_be_retried=body.can_be_retried,
        )
    except (ValueError, ValidationError):
        return CodatError(
            response.reason_phrase or "error", status_code=response.status_code, method=method, path=path
        )
