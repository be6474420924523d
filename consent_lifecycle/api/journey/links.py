"""Journey links: signed, expiring, bound to one company (and optionally one product). Pure functions.

A token is `<payload>.<signature>`, both base64url without padding: the payload is JSON
`{"c": company_id, "p": product or null, "e": expiry (unix seconds)}`, the signature HMAC-SHA256 of the
payload under the server's secret. `verify` checks, in this order, that the token is well formed, that the
signature matches (else `tampered`: any change to company, product or expiry breaks it), that it names the
company of the page it was opened on (else `other-company`), and that it has not expired (`expired`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from consent_lifecycle.clock import as_utc

#: what a customer may take to open a link sent to them
DEFAULT_TTL: Final = timedelta(days=7)
MAX_TTL: Final = timedelta(days=30)
#: why a link is refused
REASONS: Final = ("malformed", "tampered", "other-company", "expired")
_PURPOSE: Final = b"consent-journey-link\x00"


class LinkError(ValueError):
    """A journey link refused; `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Link:
    company_id: str
    #: None: the company's whole journey (manage page and every product); else that product's confirm page
    product: str | None
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, _PURPOSE + payload.encode("ascii"), hashlib.sha256).digest())


def make_link(
    secret: bytes, company_id: str, product: str | None, now: datetime, ttl: timedelta = DEFAULT_TTL
) -> tuple[str, datetime]:
    """A token for `company_id` (and `product`) valid from `now` for `ttl`, and when it expires."""
    if not secret:
        raise ValueError("the signing secret is empty")
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValueError(f"a journey link lives more than 0 s and at most {MAX_TTL.days} days, got {ttl}")
    expires_at = (as_utc(now) + ttl).replace(microsecond=0)
    body = {"c": company_id, "p": product, "e": int(expires_at.timestamp())}
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_sign(secret, payload)}", expires_at


def verify(secret: bytes, token: str, company_id: str, now: datetime) -> Link:
    """The link `token` stands for, if it is genuine, for `company_id`, and unexpired at `now`; else LinkError."""
    payload, dot, signature = (token or "").partition(".")
    if not dot or not payload or not signature or not payload.isascii():
        raise LinkError("malformed", "this link is incomplete: copy the whole link from the message you were sent")
    if not hmac.compare_digest(signature.encode("ascii", "replace"), _sign(secret, payload).encode("ascii")):
        raise LinkError("tampered", "this link has been altered, so it cannot be trusted")
    try:
        body = json.loads(_unb64(payload))
        link = Link(str(body["c"]), body["p"], datetime.fromtimestamp(int(body["e"]), UTC))
    except (binascii.Error, ValueError, KeyError, TypeError):  # signed by us, so never in practice
        raise LinkError("malformed", "this link cannot be read") from None
    if not hmac.compare_digest(link.company_id.encode(), company_id.encode()):
        raise LinkError("other-company", "this link was made for another business, not this one")
    if as_utc(now) >= link.expires_at:
        raise LinkError("expired", f"this link expired on {link.expires_at:%Y-%m-%d at %H:%M} UTC")
    return link
