"""The Consent API (FastAPI): products reach the ledger over HTTP; customers through the hosted journey."""
