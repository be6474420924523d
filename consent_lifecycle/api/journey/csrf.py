"""CSRF for the journey's forms: a token bound to a per-browser cookie and to the page's link.

The first page a browser opens sets `COOKIE` (random, HttpOnly, SameSite=Strict, path /journey). Each form
carries `form_token(secret, cookie, link_token)`: an HMAC of both under the server's secret. A POST is
accepted only with the cookie and a form token made from it and the same link: another site can neither
read the cookie nor make the token, and a token lifted from one browser fails in another.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

COOKIE: Final = "consent_journey"
COOKIE_PATH: Final = "/journey"
_PURPOSE: Final = b"consent-journey-csrf\x00"


def new_cookie() -> str:
    return secrets.token_urlsafe(32)


def form_token(secret: bytes, cookie: str, link_token: str) -> str:
    message = _PURPOSE + cookie.encode() + b"\x00" + link_token.encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def valid(secret: bytes, cookie: str | None, link_token: str, submitted: str | None) -> bool:
    """The form's token was made for this browser's cookie and this link."""
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(form_token(secret, cookie, link_token).encode(), submitted.encode("utf-8", "replace"))
