"""Codat's authentication: `Authorization: Basic base64(API_KEY)` (the key alone, no user:password)."""

from __future__ import annotations

import base64
from collections.abc import Generator

import httpx
from pydantic import SecretStr


def authorization_header(api_key: SecretStr) -> str:
    return "Basic " + base64.b64encode(api_key.get_secret_value().encode()).decode()


class CodatKeyAuth(httpx.Auth):
    """Adds the header to each request; the key lives only in a SecretStr and never in a repr."""

    def __init__(self, api_key: SecretStr) -> None:
        self._api_key = api_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = authorization_header(self._api_key)
        yield request

    def __repr__(self) -> str:
        return "CodatKeyAuth(api_key=SecretStr('**********'))"
