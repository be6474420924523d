"""What the Codat routes do to the sandbox's state: companies, connections, sync settings and pulls.

Pull operations finish `pull_duration_seconds` of sandbox time after they were requested. They are settled
lazily: the earliest pending transition is kept in memory, and the first call to `settle()` after the clock
passes it moves every due pull on with one UPDATE (and keeps lastSync in step).
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta
from typing import Any

from codat_sandbox import bodies, seed
from codat_sandbox.clock import SandboxClock, parse_iso, stamp
from codat_sandbox.codat_types import (
    CONNECTION_STATUSES,
    DATA_TYPE_SOURCE,
    DATA_TYPES,
    DATASET_STATUSES,
    SOURCE_TYPES,
)
from codat_sandbox.config import SandboxConfig
from codat_sandbox.errors import ApiError
from codat_sandbox.paging import Paging
from codat_sandbox.platforms import BY_KEY
from codat_sandbox.query import Field, QueryError, compile_order_by, compile_query, tag_resolver
from codat_sandbox.store import Store

ERRORED_STATUSES = frozenset(
    {
        "FetchError",
        "MapError",
        "InternalError",
        "ProcessingError",
        "ValidationError",
        "AuthError",
        "RateLimitError",
        "PermissionsError",
        "PrerequisiteNotMet",
    }
)

_COMPANY_FIELDS = {
    "id": Field("c.id", "uuid"),
    "name": Field("c.name"),
    "description": Field("c.description"),
    "created": Field("c.created", "time"),
    "lastSync": Field("c.last_sync", "time"),
    "createdByUserName": Field("c.created_by"),
}
_CONNECTION_FIELDS = {
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
_PULL_FIELDS = {
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
_TAGS = tag_resolver("c.tags")


def _company_field(name: str) -> Field | None:
    if name.startswith("tags."):
        return _TAGS(name[len("tags.") :])
    return _COMPANY_FIELDS.get(name)


def _query_error(exc: QueryError) -> ApiError:
    return ApiError(400, str(exc), errors=[(exc.parameter, str(exc))], validator="QueryValidator")


def _uuid_or_none(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except (ValueError, AttributeError, TypeError):
        return None


class World:
    """The sandbox's Codat state (a `Store`) seen through its clock."""

    def __init__(self, config: SandboxConfig, clock: SandboxClock) -> None:
        self.clock = clock
        self.pull_duration = config.pull_duration_seconds
        self.store = Store(config.state_path)
        self._lock = threading.RLock()
        self._next_fetch: str | None = None
        self._next_due: str | None = None
        meta = self.store.meta()
        if (
            self.store.has_world()
            and meta.get("seed") == str(config.seed)
            and meta.get("companies") == str(config.companies)
        ):
            self.seed = config.seed
            self.company_count = config.companies
            self.reset_at = meta["reset_at"]
            self._refresh_markers()
        else:
            self.reset(config.companies, config.seed)
        if config.eager_history:
            self.materialize_history()

    # -- lifecycle ---------------------------------------------------------------------------------------

    def now_text(self) -> str:
        return stamp(self.clock.now())

    def reset(self, companies: int, seed_value: int) -> None:
        with self._lock:
            self.reset_at = self.now_text()
            built = seed.build_world(seed_value, companies, seed.parse(self.reset_at))
            self.store.rebuild(
                built.companies,
                built.connections,
                {"seed": str(seed_value), "companies": str(companies), "reset_at": self.reset_at},
            )
            self.seed = seed_value
            self.company_count = companies
            self._next_fetch = self._next_due = None

    def close(self) -> None:
        self.store.close()

    def _refresh_markers(self) -> None:
        self._next_fetch, self._next_due = self.store.next_pending()

    def settle(self) -> None:
        """Finish what the clock says is finished (cheap when nothing is due)."""
        now = self.now_text()
        if not ((self._next_fetch and self._next_fetch <= now) or (self._next_due and self._next_due <= now)):
            return
        with self._lock:
            self.store.settle(now)
            self._refresh_markers()

    def materialize_history(self) -> int:
        """Every seeded company's pull history now (as Codat already has it), not on the company's first
        read; returns how many companies' histories were made."""
        pending = [row["id"] for row in self.store.all("SELECT id FROM companies WHERE history_done = 0")]
        for company_id in pending:
            self.ensure_history({"id": company_id, "history_done": 0})
        return len(pending)

    def ensure_history(self, company: Any) -> None:
        """Materialize a seeded company's pull history on first use (see `seed.history`)."""
        if company["history_done"]:
            return
        with self._lock:
            row = self.store.company(company["id"])
            if row is None or row["history_done"]:
                return
            rows = seed.history(
                self.seed,
                row["id"],
                row["settings_profile"],
                self.store.connections_of(row["id"]),
                seed.parse(self.reset_at),
            )
            self.store.add_history(row["id"], rows)

    # -- companies ---------------------------------------------------------------------------------------

    def company(self, company_id: str) -> Any:
        normalized = _uuid_or_none(company_id)
        row = self.store.company(normalized) if normalized else None
        if row is None:
            raise ApiError(404, f"No company was found with ID {company_id}")
        return row

    def list_companies(self, paging: Paging, tags: str | None) -> tuple[int, list[str]]:
        try:
            where, params = compile_query(paging.query, _company_field, resource="Company")
            tag_where, tag_params = compile_query(
                tags, _TAGS, resource="Company", parameter="tags", operators=("!=", "=", "~")
            )
            order = compile_order_by(paging.order_by, _company_field, resource="Company")
        except QueryError as exc:
            raise _query_error(exc) from None
        where = f"({where}) AND ({tag_where})"
        params = [*params, *tag_params]
        order_sql, order_params = order if order else ("", [])
        order_sql = f"{order_sql + ', ' if order_sql else ''}c.created ASC, c.id ASC"
        total = self.store.count_companies(where, params)
        docs = (
            self.store.company_json_page(
                where, params, order_sql, order_params, paging.page_size, paging.offset
            )
            if paging.offset < total
            else []
        )
        return total, docs

    def company_json(self, company_id: str) -> str:
        row = self.company(company_id)
        return self.store.company_json(row["id"])  # type: ignore[return-value]

    def create_company(self, body: Any) -> str:
        data = bodies.company_body(body)
        company_id = str(uuid.uuid4())
        self.store.insert_company(
            {
                "id": company_id,
                "name": data["name"],
                "description": data.get("description"),
                "created": self.now_text(),
                "created_by": None,
                "products": "[]",
                "tags": json.dumps(data.get("tags") or {}),
                "last_sync": None,
                "settings_profile": 0,
                "history_done": 1,
            }
        )
        return self.store.company_json(company_id)  # type: ignore[return-value]

    def change_company(self, company_id: str, body: Any, *, replace: bool) -> str:
        row = self.company(company_id)
        data = bodies.company_body(body, partial=not replace)
        if replace:
            name, description, tags = data["name"], data.get("description"), data.get("tags") or {}
        else:
            name = data.get("name") or row["name"]
            description = data["description"] if data.get("description") is not None else row["description"]
            tags = data["tags"] if data.get("tags") is not None else json.loads(row["tags"])
        self.store.update_company(row["id"], name, description, json.dumps(tags))
        return self.store.company_json(row["id"])  # type: ignore[return-value]

    def delete_company(self, company_id: str) -> None:
        row = self.company(company_id)
        with self._lock:
            self.store.delete_company(row["id"])
            self._refresh_markers()

    # -- connections -------------------------------------------------------------------------------------

    def connection(self, company_id: str, connection_id: str) -> tuple[Any, Any]:
        company = self.company(company_id)
        normalized = _uuid_or_none(connection_id)
        conn = self.store.connection(normalized) if normalized else None
        if conn is None or conn["company_id"] != company["id"]:
            raise ApiError(404, f"Data connection {connection_id} not found")
        return company, conn

    def list_connections(self, company_id: str, paging: Paging) -> tuple[int, list[str]]:
        company = self.company(company_id)
        try:
            where, params = compile_query(paging.query, _CONNECTION_FIELDS, resource="Connection")
            order = compile_order_by(paging.order_by, _CONNECTION_FIELDS, resource="Connection")
        except QueryError as exc:
            raise _query_error(exc) from None
        order_sql, order_params = order if order else ("", [])
        order_sql = f"{order_sql + ', ' if order_sql else ''}n.created ASC, n.id ASC"
        total = self.store.count_connections(company["id"], where, params)
        docs = (
            self.store.connection_json_page(
                company["id"], where, params, order_sql, order_params, paging.page_size, paging.offset
            )
            if paging.offset < total
            else []
        )
        return total, docs

    def connection_json(self, company_id: str, connection_id: str) -> str:
        _, conn = self.connection(company_id, connection_id)
        return self.store.connection_json(conn["id"])  # type: ignore[return-value]

    def create_connection(self, company_id: str, body: Any) -> str:
        company = self.company(company_id)
        platform = BY_KEY[bodies.platform_key(body)]
        self.ensure_history(company)
        connection_id = str(uuid.uuid4())
        self.store.insert_connection(
            {
                "id": connection_id,
                "company_id": company["id"],
                "integration_id": platform.integration_id,
                "integration_key": platform.key,
                "source_id": platform.source_id,
                "platform_name": platform.name,
                "source_type": platform.source_type,
                "status": "PendingAuth",
                "created": self.now_text(),
                "last_sync": None,
                "errors": "[]",
            }
        )
        return self.store.connection_json(connection_id)  # type: ignore[return-value]

    def unlink_connection(self, company_id: str, connection_id: str, body: Any) -> str:
        company, conn = self.connection(company_id, connection_id)
        bodies.unlink_status(body)
        if conn["status"] != "Linked":
            raise ApiError(
                400,
                f"Only a Linked connection can be unlinked; connection {conn['id']} is {conn['status']}.",
                errors=[("status", f"connection is {conn['status']}")],
                validator="ConnectionStatusValidator",
            )
        self.ensure_history(company)
        with self._lock:
            self.store.set_connection_state(conn["id"], "Unlinked", conn["errors"])
            self.store.fail_pending_pulls(conn["id"], "AuthError", seed.AUTH_ERROR_TEXT)
        return self.store.connection_json(conn["id"])  # type: ignore[return-value]

    def delete_connection(self, company_id: str, connection_id: str) -> None:
        company, conn = self.connection(company_id, connection_id)
        self.ensure_history(company)
        with self._lock:
            self.store.fail_pending_pulls(conn["id"], "Cancelled", "The connection was deleted.")
            self.store.delete_connection(conn["id"])
            self.store.refresh_company_last_sync([company["id"]])

    def set_connection_status(self, connection_id: str, action: str) -> str:
        """Admin: `deauthorize` (Linked -> Deauthorized, with an Active error) or `reconnect` (any other
        status -> Linked, resolving Active errors; from PendingAuth this is the first link, which queues
        the company's fetchOnFirstLink data types on it)."""
        normalized = _uuid_or_none(connection_id)
        conn = self.store.connection(normalized) if normalized else None
        if conn is None:
            raise ApiError(404, f"Data connection {connection_id} not found")
        company = self.store.company(conn["company_id"])
        self.ensure_history(company)
        now = self.now_text()
        errors = json.loads(conn["errors"] or "[]")
        with self._lock:
            if action == "deauthorize":
                if conn["status"] != "Linked":
                    raise ApiError(
                        400,
                        f"Only a Linked connection can be deauthorized; connection {conn['id']} "
                        f"is {conn['status']}.",
                        errors=[("status", f"connection is {conn['status']}")],
                        validator="ConnectionStatusValidator",
                    )
                errors.append(seed.deauthorization_error(now))
                self.store.set_connection_state(conn["id"], "Deauthorized", json.dumps(errors))
                self.store.fail_pending_pulls(conn["id"], "AuthError", seed.AUTH_ERROR_TEXT)
            else:
                if conn["status"] == "Linked":
                    raise ApiError(
                        400,
                        f"Connection {conn['id']} is already Linked.",
                        errors=[("status", "connection is Linked")],
                        validator="ConnectionStatusValidator",
                    )
                for error in errors:
                    if error.get("status") == "Active":
                        error["status"] = "Resolved"
                        error["resolvedOnUtc"] = now
                self.store.set_connection_state(conn["id"], "Linked", json.dumps(errors))
                if conn["status"] == "PendingAuth":
                    linked = self.store.connection(conn["id"])
                    for setting in self.sync_settings(company["id"])["settings"]:
                        if (
                            setting.get("fetchOnFirstLink")
                            and DATA_TYPE_SOURCE.get(setting["dataType"]) == conn["source_type"]
                        ):
                            self._queue(company["id"], linked, setting["dataType"])
        return self.store.connection_json(conn["id"])  # type: ignore[return-value]

    # -- sync settings -----------------------------------------------------------------------------------

    def sync_settings(self, company_id: str) -> dict[str, Any]:
        company = self.company(company_id)
        custom = self.store.sync_settings(company["id"])
        if custom is None:
            settings, overrides = seed.profile_settings(company["settings_profile"]), True
        else:
            settings, overrides = json.loads(custom["settings"]), bool(custom["overrides_defaults"])
        return {"companyId": company["id"], "settings": settings, "overridesDefaults": overrides}

    def set_sync_settings(self, company_id: str, body: Any) -> None:
        company = self.company(company_id)
        settings, overrides = bodies.sync_settings_body(body, company["id"])
        self.store.set_sync_settings(company["id"], json.dumps(settings), overrides)

    # -- pulls -------------------------------------------------------------------------------------------

    def _pull_doc(self, row: Any) -> dict[str, Any]:
        status = row["status"]
        done = row["completed"] is not None
        if done:
            progress = 100
        elif self.pull_duration <= 0:
            progress = 99
        else:
            elapsed = (self.clock.now() - parse_iso(row["requested"])).total_seconds()
            progress = max(0, min(99, int(elapsed * 100 / self.pull_duration)))
        doc: dict[str, Any] = {
            "id": row["id"],
            "companyId": row["company_id"],
            "connectionId": row["connection_id"],
            "dataType": row["data_type"],
            "status": status,
            "statusDescription": row["status_description"],
            "errorMessage": row["error_message"],
            "requested": row["requested"],
        }
        if done:
            doc["completed"] = row["completed"]
        doc.update(progress=progress, isCompleted=done, isErrored=status in ERRORED_STATUSES)
        return doc

    def list_pulls(self, company_id: str, paging: Paging) -> tuple[int, list[str]]:
        company = self.company(company_id)
        try:
            where, params = compile_query(paging.query, _PULL_FIELDS, resource="Dataset")
            order = compile_order_by(paging.order_by, _PULL_FIELDS, resource="Dataset")
        except QueryError as exc:
            raise _query_error(exc) from None
        self.ensure_history(company)
        order_sql, order_params = order if order else ("", [])
        order_sql = f"{order_sql + ', ' if order_sql else ''}p.requested ASC, p.id ASC"
        total = self.store.count_pulls(company["id"], where, params)
        rows = (
            self.store.pull_page(
                company["id"], where, params, order_sql, order_params, paging.page_size, paging.offset
            )
            if paging.offset < total
            else []
        )
        return total, [json.dumps(self._pull_doc(row)) for row in rows]

    def pull(self, company_id: str, pull_id: str) -> dict[str, Any]:
        company = self.company(company_id)
        self.ensure_history(company)
        normalized = _uuid_or_none(pull_id)
        row = self.store.pull(company["id"], normalized) if normalized else None
        if row is None:
            raise ApiError(404, f"No pull operation was found with ID {pull_id} for company {company['id']}")
        return self._pull_doc(row)

    def data_status(self, company_id: str) -> dict[str, Any]:
        company = self.company(company_id)
        self.ensure_history(company)
        latest: dict[str, Any] = {}
        latest_ok: dict[str, Any] = {}
        for row in self.store.pulls_for_status(company["id"]):
            latest[row["data_type"]] = row
            if row["status"] == "Complete":
                best = latest_ok.get(row["data_type"])
                if best is None or row["completed"] >= best["completed"]:
                    latest_ok[row["data_type"]] = row
        out: dict[str, Any] = {}
        for data_type in DATA_TYPES:
            row = latest.get(data_type)
            if row is None:
                continue
            entry: dict[str, Any] = {"dataType": data_type, "currentStatus": row["status"]}
            ok = latest_ok.get(data_type)
            if ok is not None:
                entry["lastSuccessfulSync"] = ok["completed"]
            entry["latestSyncId"] = row["id"]
            if ok is not None:
                entry["latestSuccessfulSyncId"] = ok["id"]
            out[data_type] = entry
        return out

    def _queue(self, company_id: str, conn: Any, data_type: str) -> Any:
        """Create a pull of `data_type` on `conn`; the caller has checked nothing is in progress."""
        now = self.clock.now().replace(microsecond=0)
        if DATA_TYPE_SOURCE[data_type] != conn["source_type"]:
            outcome, message = (
                "NotSupported",
                (
                    f"{conn['platform_name']} ({conn['source_type']}) does not "
                    f"support the data type {data_type}."
                ),
            )
        elif conn["status"] != "Linked":
            outcome, message = "AuthError", seed.AUTH_ERROR_TEXT
        else:
            outcome, message = "Complete", None
        pull_id = str(uuid.uuid4())
        fetch_at = stamp(now + timedelta(seconds=self.pull_duration * 0.2))
        due = stamp(now + timedelta(seconds=self.pull_duration))
        self.store.insert_pulls(
            [
                (
                    pull_id,
                    company_id,
                    conn["id"],
                    data_type,
                    "Queued",
                    outcome,
                    stamp(now),
                    fetch_at,
                    due,
                    None,
                    message,
                    None,
                )
            ]
        )
        self._next_fetch = min(filter(None, (self._next_fetch, fetch_at)))
        self._next_due = min(filter(None, (self._next_due, due)))
        return pull_id

    def queue_data_type(self, company_id: str, data_type: str, connection_id: str | None) -> dict[str, Any]:
        if data_type not in DATA_TYPES:
            raise ApiError(
                400,
                f"'{data_type}' is not a valid data type.",
                errors=[("dataType", f"{data_type!r} is not one of the {len(DATA_TYPES)} Codat data types")],
                validator="DataTypeValidator",
            )
        company = self.company(company_id)
        if connection_id:
            _, conn = self.connection(company["id"], connection_id)
        else:
            source = DATA_TYPE_SOURCE[data_type]
            candidates = [c for c in self.store.connections_of(company["id"]) if c["source_type"] == source]
            if not candidates:
                raise ApiError(
                    400,
                    f"Company {company['id']} has no {source} connection to pull {data_type} from.",
                    errors=[("connectionId", f"no {source} connection")],
                    validator="DataTypeValidator",
                )
            conn = next((c for c in candidates if c["status"] == "Linked"), candidates[0])
        self.ensure_history(company)
        with self._lock:
            self.settle()
            if self.store.pending_pull(conn["id"], data_type) is not None:
                raise ApiError(
                    400,
                    f"DatasetAlreadyInProgressException: a pull of {data_type} is already in "
                    f"progress for connection {conn['id']}.",
                    errors=[("dataType", "DatasetAlreadyInProgress")],
                    validator="DatasetValidator",
                )
            pull_id = self._queue(company["id"], conn, data_type)
            self.settle()
        return self._pull_doc(self.store.pull(company["id"], pull_id))

    def refresh_all(self, company_id: str) -> None:
        company = self.company(company_id)
        self.ensure_history(company)
        settings = self.sync_settings(company["id"])["settings"]
        connections = [c for c in self.store.connections_of(company["id"]) if c["status"] == "Linked"]
        with self._lock:
            self.settle()
            for setting in sorted(settings, key=lambda s: s.get("syncOrder", 0)):
                if not setting.get("fetchOnFirstLink"):
                    continue
                data_type = setting["dataType"]
                for conn in connections:
                    if (
                        DATA_TYPE_SOURCE.get(data_type) == conn["source_type"]
                        and self.store.pending_pull(conn["id"], data_type) is None
                    ):
                        self._queue(company["id"], conn, data_type)
            self.settle()
