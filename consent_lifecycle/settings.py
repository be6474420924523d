"""Settings from environment variables prefixed `CONSENT_` (and a `.env` file, if present)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(".consent")
DEFAULT_DATABASE_URL = f"sqlite:///{DEFAULT_DATA_DIR / 'consent.db'}"
CODAT_PRODUCTION_URL = "https://api.codat.io"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONSENT_", env_file=".env", extra="ignore")

    database_url: str = Field(DEFAULT_DATABASE_URL, description="SQLAlchemy URL of the consent database")
    codat_base_url: str = Field(CODAT_PRODUCTION_URL, description="Codat API base URL (or the sandbox's)")
    codat_api_key: SecretStr | None = Field(None, description="Codat API key (the raw key, not the header)")
    codat_api_key_block: str = Field(
        "codat-api-key",
        description="name of a Prefect Secret block holding the Codat API key, read by the flows' tasks when "
        "CONSENT_CODAT_API_KEY is not set",
    )
    codat_max_concurrency: int = Field(10, ge=1, le=200, description="bound on concurrent Codat requests")
    codat_max_requests_per_minute: int = Field(
        500,
        ge=0,
        description="the flows' own cap on Codat requests a minute (retries included), shared by the threads and "
        "processes of a machine; Codat's limit is shared with the client's products. 0: no cap",
    )
    codat_timeout_seconds: float = Field(30.0, gt=0, description="per-request timeout")
    catalog: Path | None = Field(None, description="product catalog TOML; default: the shipped catalog")
    notify_webhook_url: str | None = Field(None, description="POST notifications here (signed); else a file")
    notify_webhook_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key of the webhook signature")
    notify_file: Path = Field(DEFAULT_DATA_DIR / "notifications.jsonl", description="notifications file")
    codat_webhook_secret: SecretStr | None = Field(
        None, description="signing secret of the Codat webhook endpoint (whsec_...), for the receiver"
    )
    journey_base_url: str | None = Field(
        None,
        description="public base URL of the hosted consent journey (e.g. https://consent.example.com), used in "
        "the links POST /v1/companies/{id}/journey-links makes; default: the request's own base URL",
    )
    alert_webhook_url: str | None = Field(
        None,
        description="operators' alerts (a flow run failed) are POSTed here as {text, title} JSON by a Prefect "
        "automation (Slack-compatible); `make serve` defaults it to its own /alerts inbox",
    )
    dask_address: str | None = Field(
        None, description="tcp://host:8786 of a Dask scheduler: the flows fan their batch tasks out over its workers"
    )
    task_threads: int = Field(4, ge=1, le=64, description="batch tasks run at once per flow run (without Dask)")
    task_processes: int = Field(
        0,
        ge=0,
        le=64,
        description="when > 0 (and no Dask), the reconciliation's fetch and remediation tasks run in a pool "
        "of this many processes, not threads",
    )
    local_store_tables: dict[str, str] = Field(
        default_factory=dict,
        description='JSON {"data type": "table"}: tables in the consent database holding pulled data, purged '
        "by company_id when that data type of the company is deleted",
    )


def get_settings() -> Settings:
    return Settings()
