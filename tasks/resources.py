"""Process-wide resources the tasks share: settings, one engine per database URL, a Codat client."""

from __future__ import annotations

from functools import lru_cache

from pydantic import SecretStr
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
    """A new client for one task's event loop (an httpx.AsyncClient cannot cross event loops). The key is
    CONSENT_CODAT_API_KEY, else the Prefect Secret block named by CONSENT_CODAT_API_KEY_BLOCK."""
    current = settings()
    if current.codat_api_key is None:
        key = key_from_secret_block(current.codat_api_key_block)
        if key is None:
            raise ValueError(
                f"no Codat API key: set CONSENT_CODAT_API_KEY, or save it in a Prefect Secret block named "
                f"{current.codat_api_key_block!r} (CONSENT_CODAT_API_KEY_BLOCK)"
            )
        current = current.model_copy(update={"codat_api_key": key})
    return CodatClient.from_settings(current)


@lru_cache(maxsize=4)
def key_from_secret_block(name: str) -> SecretStr | None:
    """The value of the Prefect Secret block `name`, or None when there is no such block (read once per
    process)."""
    from prefect.blocks.system import Secret

    try:
        return SecretStr(Secret.load(name, _sync=True).get())
    except ValueError:  # no block of that name
        return None
