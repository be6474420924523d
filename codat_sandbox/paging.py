"""Codat paging: `page` (>= 1, default 1), `pageSize` (1..5000, default 100), and the paged body."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from codat_sandbox.errors import ApiError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 5000


@dataclass(frozen=True)
class Paging:
    page: int
    page_size: int
    query: str | None = None
    order_by: str | None = None
    extra: tuple[tuple[str, str], ...] = ()  # other filters to carry into links, e.g. tags

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            400,
            f"The value {raw!r} of parameter {name} is not an integer.",
            errors=[(name, f"{name} must be an integer")],
            validator="PagingValidator",
        ) from None
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(
            400,
            f"The value {value} of parameter {name} is out of range: it must be {limit}.",
            errors=[(name, f"{name} must be {limit}")],
            validator="PagingValidator",
        )
    return value


def parse_paging(params: Mapping[str, str], *, extra: Sequence[str] = ()) -> Paging:
    return Paging(
        page=_int_param(params, "page", 1, 1, None),
        page_size=_int_param(params, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
        query=params.get("query") or None,
        order_by=params.get("orderBy") or None,
        extra=tuple((name, params[name]) for name in extra if params.get(name)),
    )


def _href(path: str, paging: Paging, page: int) -> dict[str, str]:
    params: list[tuple[str, str | int]] = [("page", page), ("pageSize", paging.page_size)]
    if paging.query:
        params.append(("query", paging.query))
    if paging.order_by:
        params.append(("orderBy", paging.order_by))
    params.extend(paging.extra)
    return {"href": f"{path}?{urlencode(params, quote_via=quote)}"}


def page_body(path: str, paging: Paging, total: int, results: Sequence[str]) -> bytes:
    """The paged JSON body; `results` are already-encoded JSON documents."""
    links: dict[str, dict[str, str]] = {"self": {"href": path}, "current": _href(path, paging, paging.page)}
    if paging.page * paging.page_size < total:
        links["next"] = _href(path, paging, paging.page + 1)
    if paging.page > 1:
        links["previous"] = _href(path, paging, paging.page - 1)
    tail = json.dumps(
        {"pageNumber": paging.page, "pageSize": paging.page_size, "totalResults": total, "_links": links}
    )
    return ('{"results":[' + ",".join(results) + "]," + tail[1:]).encode()
