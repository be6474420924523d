"""What the Codat routes of sync settings, pull operations and data status do to the sandbox's state.

A mixin of `World` (codat_sandbox/world.py), which holds the store, the clock and the lock it uses.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from codat_sandbox import bodies, seed
from codat_sandbox.clock import parse_iso, stamp
from codat_sandbox.codat_types import DATA_TYPE_SOURCE, DATA_TYPES
from codat_sandbox.errors import ApiError
from codat_sandbox.events import read_entry, read_payload
from codat_sandbox.fields import PULL_FIELDS, query_error, uuid_or_none
from codat_sandbox.paging import Paging
from codat_sandbox.query import QueryError, compile_order_by, compile_query

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


class Pulls:
    """Sync settings, pulls and data status of `World`'s companies."""

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
            where, params = compile_query(paging.query, PULL_FIELDS, resource="Dataset")
            order = compile_order_by(paging.order_by, PULL_FIELDS, resource="Dataset")
        except QueryError as exc:
            raise query_error(exc) from None
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
        normalized = uuid_or_none(pull_id)
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

    def record_pull(self, company_id: str, body: Any) -> dict[str, Any]:
        """Admin: a pull of any data type on a connection, completed at the clock's now, that Codat made
        outside the schedule (and reports with read.completed): what reconciliation must notice."""
        data = body if isinstance(body, dict) else {}
        data_type, connection_id = data.get("dataType"), data.get("connectionId")
        if not isinstance(data_type, str) or data_type not in DATA_TYPES:
            raise ApiError(
                400,
                f"dataType: {data_type!r} is not one of the {len(DATA_TYPES)} Codat data types",
                errors=[("dataType", "a Codat data type key is required")],
                validator="SandboxAdmin",
            )
        if not isinstance(connection_id, str):
            raise ApiError(
                400,
                "connectionId: the id of one of the company's connections is required",
                errors=[("connectionId", "is required")],
                validator="SandboxAdmin",
            )
        company, conn = self.connection(company_id, connection_id)
        now = self.now_text()
        pull_id = str(uuid.uuid4())
        with self._lock:
            self.store.record_pull(
                (
                    pull_id,
                    company["id"],
                    conn["id"],
                    data_type,
                    "Complete",
                    "Complete",
                    now,
                    now,
                    now,
                    now,
                    None,
                    None,
                )
            )
        if self.events.active:
            doc = json.loads(self.store.company_json(company["id"]))
            entry = read_entry(conn["id"], data_type, "Complete", None, company["id"])
            event_type = "read.completed" if conn["last_sync"] else "read.completed.initial"
            self.events.publish(event_type, now, read_payload(doc, conn["last_sync"], [entry]), doc["tags"])
        return self._pull_doc(self.store.pull(company["id"], pull_id))
