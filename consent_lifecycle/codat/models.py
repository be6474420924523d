"""Typed views of Codat's Platform API bodies (fields named as in Python, aliased to Codat's camelCase).

Unknown fields are tolerated (Codat adds fields without notice); known fields are checked, so a wrong
enum value or a missing required field fails loudly instead of flowing into a decision.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, NotRequired, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel
from typing_extensions import TypedDict

from consent_lifecycle.clock import as_utc, parse_iso
from consent_lifecycle.datatypes import CONNECTION_STATUSES, DATA_TYPES, DATASET_STATUSES, SOURCE_TYPES

#: the canonical form (lower-case, hyphenated) that `str(uuid.UUID(value))` gives back unchanged
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid(value: str) -> str:
    if type(value) is str and _CANONICAL_UUID.fullmatch(value):  # fast path: nothing to normalise
        return value
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise ValueError(f"not a uuid: {value!r}") from None


def _datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, str):
        return parse_iso(value)  # Codat may omit the zone; a naive time is UTC
    return value


Uuid = Annotated[str, AfterValidator(_uuid)]
UtcDateTime = Annotated[datetime, BeforeValidator(_datetime)]

# Codat's enums, named once in `consent_lifecycle.datatypes` (Literal of a tuple: the same values)
SourceType = Literal[SOURCE_TYPES]  # type: ignore[valid-type]
ConnectionStatus = Literal[CONNECTION_STATUSES]  # type: ignore[valid-type]
DatasetStatus = Literal[DATASET_STATUSES]  # type: ignore[valid-type]
DataTypeKey = Literal[DATA_TYPES]  # type: ignore[valid-type]


class CodatModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)

    def to_codat(self) -> dict[str, Any]:
        """The JSON body Codat expects (camelCase, no unset optional fields)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class DataConnectionError(CodatModel):
    status_code: str | None = None
    status_text: str | None = None
    error_message: str | None = None
    errored_on_utc: UtcDateTime | None = None
    status: Literal["Active", "Resolved"] | None = None
    resolved_on_utc: UtcDateTime | None = None


class Connection(CodatModel):
    id: Uuid
    integration_id: Uuid
    integration_key: str | None = None
    source_id: Uuid
    platform_name: str
    link_url: str
    status: ConnectionStatus
    created: UtcDateTime
    last_sync: UtcDateTime | None = None
    source_type: SourceType
    data_connection_errors: list[DataConnectionError] | None = None
    connection_info: dict[str, Any] | None = None


class Company(CodatModel):
    id: Uuid
    name: str
    description: str | None = None
    redirect: str
    last_sync: UtcDateTime | None = None
    created: UtcDateTime | None = None
    created_by_user_name: str | None = None
    products: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)
    data_connections: list[Connection] = Field(default_factory=list)


class SyncSetting(CodatModel):
    data_type: DataTypeKey
    fetch_on_first_link: bool
    sync_schedule: int
    sync_order: int
    sync_from_utc: str | None = None
    sync_from_window: int | None = None
    months_to_sync: int | None = None
    is_locked: bool | None = None


class CompanySyncSettings(CodatModel):
    company_id: Uuid
    settings: list[SyncSetting]
    overrides_defaults: bool


class DataStatus(CodatModel):
    data_type: DataTypeKey
    current_status: DatasetStatus
    last_successful_sync: UtcDateTime | None = None
    latest_sync_id: Uuid | None = None
    latest_successful_sync_id: Uuid | None = None


class PullOperation(CodatModel):
    id: Uuid
    company_id: Uuid
    connection_id: Uuid
    data_type: str
    status: DatasetStatus
    status_description: str | None = None
    error_message: str | None = None
    requested: UtcDateTime
    completed: UtcDateTime | None = None
    progress: int
    is_completed: bool
    is_errored: bool


class Link(CodatModel):
    href: str


class PageLinks(CodatModel):
    self_: Link = Field(alias="self")
    current: Link
    next: Link | None = None
    previous: Link | None = None


T = TypeVar("T", bound=CodatModel)


class Page(CodatModel, Generic[T]):
    results: list[T] = Field(default_factory=list)
    page_number: int = Field(ge=1)
    page_size: int = Field(ge=1)
    total_results: int = Field(ge=0)
    links: PageLinks = Field(alias="_links")

    @property
    def page_count(self) -> int:
        return -(-self.total_results // self.page_size) if self.page_size else 0


class ErrorMessage(CodatModel):
    status_code: int | None = None
    service: str | None = None
    error: str | None = None
    correlation_id: str | None = None
    can_be_retried: str | None = None
    detailed_error_code: int | None = None


# -- lean page bodies --------------------------------------------------------------------------------
# The same rules as `Page[Company]`, checked in one pass by pydantic-core with no Python callback: the
# result is the body's own dicts (camelCase keys), not models. Ids must already be canonical uuids and
# times plain ISO 8601 UTC text (`Z`, `+00:00` or no zone); a body that is anything else (or invalid) is
# left to `Page[Company]`, which normalises it or says exactly what is wrong.

_CanonicalUuid = Annotated[str, StringConstraints(pattern=f"^{_CANONICAL_UUID.pattern}$")]
_UtcText = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|\+00:00)?$")]


class _LeanConnectionError(TypedDict, total=False):
    statusCode: str | None
    statusText: str | None
    errorMessage: str | None
    erroredOnUtc: _UtcText | None
    status: Literal["Active", "Resolved"] | None
    resolvedOnUtc: _UtcText | None


class LeanConnection(TypedDict):
    id: _CanonicalUuid
    integrationId: _CanonicalUuid
    integrationKey: NotRequired[str | None]
    sourceId: _CanonicalUuid
    platformName: str
    linkUrl: str
    status: ConnectionStatus
    created: _UtcText
    lastSync: NotRequired[_UtcText | None]
    sourceType: SourceType
    dataConnectionErrors: NotRequired[list[_LeanConnectionError] | None]
    connectionInfo: NotRequired[dict[str, Any] | None]


class LeanCompany(TypedDict):
    id: _CanonicalUuid
    name: str
    description: NotRequired[str | None]
    redirect: str
    lastSync: NotRequired[_UtcText | None]
    created: NotRequired[_UtcText | None]
    createdByUserName: NotRequired[str | None]
    products: NotRequired[list[str]]
    tags: NotRequired[dict[str, str]]
    dataConnections: NotRequired[list[LeanConnection]]


class _LeanLink(TypedDict):
    href: str


class _LeanLinks(TypedDict):
    self: _LeanLink
    current: _LeanLink
    next: NotRequired[_LeanLink | None]
    previous: NotRequired[_LeanLink | None]


LeanCompanyPage = TypedDict(
    "LeanCompanyPage",
    {
        "results": NotRequired[list[LeanCompany]],
        "pageNumber": Annotated[int, Field(ge=1)],
        "pageSize": Annotated[int, Field(ge=1)],
        "totalResults": Annotated[int, Field(ge=0)],
        "_links": _LeanLinks,
    },
)
