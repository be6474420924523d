"""Bearer keys: who is calling (`caller`), and what a product key may do (`require_product`,
`require_admin`). 401 without a key or with an unknown or revoked one; 403 outside the key's scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from consent_lifecycle.api.keys import Caller, find_caller
from consent_lifecycle.api.problems import Problem

_bearer = HTTPBearer(auto_error=False, description="A key from `consent api-keys create`.")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="consent"'}


async def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """`async`: the lookup is one indexed statement, cheaper on the event loop than a thread pool hop. Not
    cached: a revoked key is refused from its next request."""
    if credentials is None:
        raise Problem(401, "send an API key as `Authorization: Bearer KEY`", headers=_CHALLENGE)
    found = find_caller(request.app.state.engine, credentials.credentials)
    if found is None:
        raise Problem(401, "the API key is unknown or revoked", headers=_CHALLENGE)
    return found


CallerDep = Annotated[Caller, Depends(caller)]


def require_product(who: Caller, product: str) -> None:
    """A product key acts on its own product only."""
    if not who.admin and who.product != product:
        raise Problem(403, f"API key {who.name!r} acts for product {who.product!r}, not {product!r}")


def require_admin(who: Caller, what: str) -> None:
    if not who.admin:
        raise Problem(403, f"{what} needs an admin key; API key {who.name!r} acts for product {who.product!r}")
