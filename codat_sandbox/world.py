"""What the Codat routes do to the sandbox's state: companies and connections here, sync settings and
pulls in its mixin `Pulls` (codat_sandbox/pulls.py).

Pull operations finish `pull_duration_seconds` of sandbox time after they were requested. They are settled
lazily: the earliest pending transition is kept in memory, and the first call to `settle()` after the clock
passes it moves every due pull on with one UPDATE (and keeps lastSync in step).
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from codat_sandbox import bodies, seed
from codat_sandbox.clock import SandboxClock, stamp
from codat_sandbox.codat_types import (
    DATA_TYPE_SOURCE,
)
from codat_sandbox.config import SandboxConfig
from codat_sandbox.errors import ApiError
from codat_sandbox.events import (
    EventSink,
    NoEvents,
    company_details,
    connection_payload,
    product_payload,
    read_entry,
    read_payload,
)
from codat_sandbox.fields import CONNECTION_FIELDS, TAGS, company_field, query_error, uuid_or_none
from codat_sandbox.paging import Paging
from codat_sandbox.platforms import BY_KEY
from codat_sandbox.pulls import Pulls
from codat_sandbox.query import QueryError, compile_order_by, compile_query
from codat_sandbox.store import Store


class World(Pulls):
    """The sandbox's Codat state (a `Store`) seen through its clock."""

    def __init__(self, config: SandboxConfig, clock: SandboxClock) -> None:
        self.clock = clock
        self.pull_duration = config.pull_duration_seconds
        self.store = Store(config.state_path)
        self._lock = threading.RLock()
        self._next_fetch: str | None = None
        self._next_due: str | None = None
        #: where changes are told as Codat events (the sandbox sets its publisher)
        self.events: EventSink = NoEvents()
        meta = self.store.meta()
        if (
            self.store.has_world()
            and meta.get("seed") == str(config.seed)
            and meta.get("companies") == str(config.companies)
        ):
            self.seed = config.seed
            self.company_count = config.companies
            self.reset_at = meta["reset_at"]
            self.store.keep_seeded_sync()
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
            finished = self.store.settle(now, report=self.events.active)
            self._refresh_markers()
        if finished:
            self.tell_reads(finished)

    def tell_reads(self, pulls: list[Any]) -> None:
        """One read.completed per connection and completion time for `pulls` (finished pull rows with
        `prev_sync`, the connection's lastSync before them): `.initial` when it had never synced."""
        rounds: dict[tuple[str, str], list[Any]] = {}
        for row in pulls:
            rounds.setdefault((row["connection_id"], row["due"]), []).append(row)
        companies: dict[str, dict[str, Any]] = {}
        last_done: dict[str, str] = {}  # a connection's earlier round in this batch
        for (connection_id, done), rows in rounds.items():
            company_id = rows[0]["company_id"]
            if company_id not in companies:
                doc: str = self.store.company_json(company_id)  # type: ignore[assignment]
                companies[company_id] = json.loads(doc)
            company = companies[company_id]
            entries = [
                read_entry(connection_id, r["data_type"], r["outcome"], r["error_message"], company_id)
                for r in rows
            ]
            prev = last_done.get(connection_id) or rows[0]["prev_sync"]
            last_done[connection_id] = done
            event_type = "read.completed" if prev else "read.completed.initial"
            self.events.publish(event_type, done, read_payload(company, prev, entries), company["tags"])

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
            # the history ends at each connection's lastSync as seeded, not as syncs since have moved it
            connections = [
                {**dict(c), "last_sync": c["seeded_sync"]} for c in self.store.connections_of(row["id"])
            ]
            rows = seed.history(
                self.seed,
                row["id"],
                row["settings_profile"],
                connections,
                seed.parse(self.reset_at),
            )
            self.store.add_history(row["id"], rows)

    # -- companies ---------------------------------------------------------------------------------------

    def company(self, company_id: str) -> Any:
        normalized = uuid_or_none(company_id)
        row = self.store.company(normalized) if normalized else None
        if row is None:
            raise ApiError(404, f"No company was found with ID {company_id}")
        return row

    def list_companies(self, paging: Paging, tags: str | None) -> tuple[int, list[str]]:
        try:
            where, params = compile_query(paging.query, company_field, resource="Company")
            tag_where, tag_params = compile_query(
                tags, TAGS, resource="Company", parameter="tags", operators=("!=", "=", "~")
            )
            order = compile_order_by(paging.order_by, company_field, resource="Company")
        except QueryError as exc:
            raise query_error(exc) from None
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
        doc = self.store.company_json(company_id)
        if self.events.active:
            company = json.loads(doc)  # type: ignore[arg-type]
            self.events.publish("company.created", self.now_text(), company_details(company), company["tags"])
        return doc  # type: ignore[return-value]

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
        doc = self.store.company_json(row["id"]) if self.events.active else None
        company = json.loads(doc) if doc is not None else None
        with self._lock:
            self.store.delete_company(row["id"])
            self._refresh_markers()
        if company is not None:
            self.events.publish("company.deleted", self.now_text(), company_details(company), company["tags"])

    def change_product(self, company_id: str, product_id: str, *, add: bool) -> None:
        """Enable (`add`) or disable a product for a company; the event only when that changed something."""
        row = self.company(company_id)
        products = json.loads(row["products"])
        if (product_id in products) == add:
            return
        products = [*products, product_id] if add else [p for p in products if p != product_id]
        self.store.set_products(row["id"], json.dumps(products))
        if self.events.active:
            company = json.loads(self.store.company_json(row["id"]))  # type: ignore[arg-type]
            event_type = "company.product.added" if add else "company.product.removed"
            self.events.publish(
                event_type, self.now_text(), product_payload(company, product_id), company["tags"]
            )

    def tell_connection(self, event_type: str, company_id: str, connection_doc: str) -> None:
        """Publish a connection event: the company's reference and the connection document as it is."""
        if self.events.active:
            company = json.loads(self.store.company_json(company_id))  # type: ignore[arg-type]
            payload = connection_payload(company, json.loads(connection_doc))
            self.events.publish(event_type, self.now_text(), payload, company["tags"])

    # -- connections -------------------------------------------------------------------------------------

    def connection(self, company_id: str, connection_id: str) -> tuple[Any, Any]:
        company = self.company(company_id)
        normalized = uuid_or_none(connection_id)
        conn = self.store.connection(normalized) if normalized else None
        if conn is None or conn["company_id"] != company["id"]:
            raise ApiError(404, f"Data connection {connection_id} not found")
        return company, conn

    def list_connections(self, company_id: str, paging: Paging) -> tuple[int, list[str]]:
        company = self.company(company_id)
        try:
            where, params = compile_query(paging.query, CONNECTION_FIELDS, resource="Connection")
            order = compile_order_by(paging.order_by, CONNECTION_FIELDS, resource="Connection")
        except QueryError as exc:
            raise query_error(exc) from None
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
        doc: str = self.store.connection_json(connection_id)  # type: ignore[assignment]
        self.tell_connection("connection.created", company["id"], doc)
        return doc

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
        doc: str = self.store.connection_json(conn["id"])  # type: ignore[assignment]
        self.tell_connection("connection.disconnected", company["id"], doc)
        return doc

    def delete_connection(self, company_id: str, connection_id: str) -> None:
        company, conn = self.connection(company_id, connection_id)
        self.ensure_history(company)
        doc: str = self.store.connection_json(conn["id"])  # type: ignore[assignment]
        with self._lock:
            self.store.fail_pending_pulls(conn["id"], "Cancelled", "The connection was deleted.")
            self.store.delete_connection(conn["id"])
            self.store.refresh_company_last_sync([company["id"]])
        self.tell_connection("connection.deleted", company["id"], doc)

    def set_connection_status(self, connection_id: str, action: str) -> str:
        """Admin: `deauthorize` (Linked -> Deauthorized, with an Active error) or `reconnect` (any other
        status -> Linked, resolving Active errors; from PendingAuth this is the first link, which queues
        the company's fetchOnFirstLink data types on it)."""
        normalized = uuid_or_none(connection_id)
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
        doc: str = self.store.connection_json(conn["id"])  # type: ignore[assignment]
        if action == "deauthorize":
            event_type = "connection.disconnected"
        else:
            event_type = (
                "connection.connected" if conn["status"] == "PendingAuth" else "connection.reconnected"
            )
        self.tell_connection(event_type, company["id"], doc)
        return doc
