"""Process-wide resources the tasks share: settings, one engine per database URL, a Codat client."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine

from consent_lifecycle.codat import CodatClient
from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.settings import Settings, get_settings


def settings() -> Settings:
    return get_settings()


@lru_cache(maxsize=4)
def _engine(url: str) -> Engine:
    # batch tasks run side by side: on SQLite, each transaction waits for the write lock up front
    return make_engine(url, sqlite_immediate=True)


def engine() -> Engine:
    return _engine(settings().database_url)


def codat_client() -> CodatClient:
    """A new client for one task's event loop (an httpx.AsyncClient cannot cross event loops)."""
    return CodatClient.from_settings(settings())
