"""What the sandbox's Codat routes filter and order on: the `query`/`orderBy` fields of companies,
connections and pull operations (with `tags.<key>`), how a query error becomes Codat's 400, and ids."""

from __future__ import annotations

import uuid

from codat_sandbox.codat_types import CONNECTION_STATUSES, DATASET_STATUSES, SOURCE_TYPES
from codat_sandbox.errors import ApiError
from codat_sandbox.query import Field, QueryError, tag_resolver

COMPANY_FIELDS = {
    "id": Field("c.id", "uuid"),
    "name": Field("c.name"),
    "description": Field("c.description"),
    "created": Field("c.created", "time"),
    "lastSync": Field("c.last_sync", "time"),
    "createdByUserName": Field("c.created_by"),
}
CONNECTION_FIELDS = {
    "id": Field("n.id", "uuid"),
    "integrationId": Field("n.integration_id", "uuid"),
    "integrationKey": Field("n.integration_key"),
    "sourceId": Field("n.source_id", "uuid"),
    "sourceType": Field("n.source_type", "enum", enum=SOURCE_TYPES),
    "platformName": Field("n.platform_name"),
    "status": Field("n.status", "enum", enum=CONNECTION_STATUSES),
    "created": Field("n.created", "time"),
    "lastSync": Field("n.last_sync", "time"),
}
PULL_FIELDS = {
    "id": Field("p.id", "uuid"),
    "companyId": Field("p.company_id", "uuid"),
    "connectionId": Field("p.connection_id", "uuid"),
    "dataType": Field("p.data_type"),
    "status": Field("p.status", "enum", enum=DATASET_STATUSES),
    "requested": Field("p.requested", "time"),
    "completed": Field("p.completed", "time"),
    "errorMessage": Field("p.error_message"),
    "statusDescription": Field("p.status_description"),
}
TAGS = tag_resolver("c.tags")


def company_field(name: str) -> Field | None:
    if name.startswith("tags."):
        return TAGS(name[len("tags.") :])
    return COMPANY_FIELDS.get(name)


def query_error(exc: QueryError) -> ApiError:
    return ApiError(400, str(exc), errors=[(exc.parameter, str(exc))], validator="QueryValidator")


def uuid_or_none(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except (ValueError, AttributeError, TypeError):
        return None
