"""Codat's `ErrorMessage` body, used for every error the sandbox answers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping

from starlette.responses import Response

SERVICE = "PublicApi"

DEFAULT_MESSAGES = {
    400: "Error processing request - not valid.",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    429: "You have made too many requests in a given amount of time; please retry later.",
    500: "There is a problem with our server. Please try again later.",
    503: "The Codat API is temporarily offline for maintenance. Please try again later.",
    504: "The request timed out. Please try again later.",
}


class ApiError(Exception):
    """An error answer: status, a message, and optional validation items `(itemId, message)`."""

    def __init__(
        self,
        status_code: int,
        message: str | None = None,
        *,
        errors: Iterable[tuple[str | None, str]] = (),
        validator: str = "Sandbox",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.message = message or DEFAULT_MESSAGES.get(status_code, "Error")
        self.errors = list(errors)
        self.validator = validator
        self.headers = dict(headers or {})
        super().__init__(f"{status_code}: {self.message}")


def error_body(
    status_code: int,
    message: str | None = None,
    *,
    errors: Iterable[tuple[str | None, str]] = (),
    validator: str = "Sandbox",
) -> dict:
    items = [{"itemId": item_id, "message": text, "validatorName": validator} for item_id, text in errors]
    return {
        "statusCode": status_code,
        "service": SERVICE,
        "error": message or DEFAULT_MESSAGES.get(status_code, "Error"),
        "correlationId": uuid.uuid4().hex,
        "validation": {"errors": items, "warnings": []} if items else None,
        "canBeRetried": "Unknown",
        "detailedErrorCode": 0,
    }


def error_response(
    status_code: int,
    message: str | None = None,
    *,
    errors: Iterable[tuple[str | None, str]] = (),
    validator: str = "Sandbox",
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = error_body(status_code, message, errors=errors, validator=validator)
    return Response(
        content=json.dumps(body).encode(),
        status_code=status_code,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def from_api_error(exc: ApiError) -> Response:
    return error_response(
        exc.status_code, exc.message, errors=exc.errors, validator=exc.validator, headers=exc.headers
    )
