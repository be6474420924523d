"""The API's request bodies and path parameters: pydantic models that refuse unknown fields, naive times
and malformed ids (422 naming the field), before anything is read or written."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Path
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from consent_lifecycle.api.problems import UUID_PATTERN, Problem
from consent_lifecycle.clock import as_utc, iso

#: how far ahead of the server's clock a client's `at` may be (clocks differ a little)
CLOCK_SKEW = timedelta(minutes=5)

Uuid = Annotated[str, StringConstraints(pattern=UUID_PATTERN)]
#: no NUL character: PostgreSQL's text refuses it
Key = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00]+$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=r"^[^\x00]+$")]
CompanyId = Annotated[str, Path(pattern=UUID_PATTERN, description="Codat company id (uuid).")]
ConnectionId = Annotated[str, Path(pattern=UUID_PATTERN, description="Codat connection id (uuid).")]
Product = Annotated[str, Path(min_length=1, max_length=64, description="Product key from the catalog.")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Moment(Body):
    at: AwareDatetime | None = Field(
        None, description="When the customer did it (ISO 8601 with a time zone; default: now). Not in the future."
    )


class GrantBody(Moment):
    data_types: list[Key] | None = Field(
        None, description="Codat data types (default on a grant: the product's required ones)."
    )
    connections: list[Uuid] | None = Field(
        None, description="Connection ids (default on a grant: the company's Linked connections carrying them)."
    )
    wording_version: Text | None = Field(
        None, description="Version of the consent wording the customer saw (default: catalog-<version>)."
    )


class RevokeBody(Moment):
    reason: Text = Field("customer request", description="Why (recorded in the ledger).")


class DisconnectBody(Moment):
    reason: Text | None = Field(None, description="Why (recorded in the ledger).")


class HoldBody(Moment):
    reason: Text = Field(description="Why the data must be kept.")
    data_type: Key | None = Field(None, description="Only this Codat data type (default: all the company's data).")


def moment(at: datetime | None, now: datetime) -> datetime:
    """`at` (default `now`), refused when it is ahead of the server's clock by more than CLOCK_SKEW."""
    if at is None:
        return now
    if as_utc(at) > now + CLOCK_SKEW:
        raise Problem(422, f"at: {iso(at)} is in the future (server time {iso(now)})")
    return as_utc(at)
