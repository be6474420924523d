"""The Consent API (FastAPI): products reach the ledger over HTTP; customers through the hosted journey."""

from consent_lifecycle.api.app import create_app

__all__ = ["create_app"]
