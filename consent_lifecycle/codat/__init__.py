"""Codat Platform API client."""

from consent_lifecycle.codat.client import CodatClient
from consent_lifecycle.codat.errors import CodatError
from consent_lifecycle.codat.retry import RetryPolicy

__all__ = ["CodatClient", "CodatError", "RetryPolicy"]
