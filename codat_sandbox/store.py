"""The sandbox's state in SQLite (stdlib `sqlite3`): schema, bulk load and the queries the routes need.

Times are stored as fixed-width UTC text (`2026-11-01T12:00:00Z`) so they compare as text. Companies and
connections are rendered to JSON by SQLite itself (`json_object`), so a 5000-company page costs two
queries and a string join, not a Python object graph.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE companies (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    description TEXT,
    created TEXT NOT NULL,
    created_by TEXT,
    products TEXT NOT NULL DEFAULT '[]',
    tags TEXT NOT NULL DEFAULT '{}',
    last_sync TEXT,
    settings_profile INTEGER NOT NULL DEFAULT 0,
    history_done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL,
    integration_id TEXT NOT NULL,
    integration_key TEXT NOT NULL,
    source_id TEXT NOT NULL,
    platform_name TEXT NOT NULL,
    source_type TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    last_sync TEXT,
    errors TEXT NOT NULL DEFAULT '[]',
    seeded_sync TEXT
);
CREATE TABLE pulls (
    id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL,
    requested TEXT NOT NULL,
    fetch_at TEXT NOT NULL,
    due TEXT NOT NULL,
    completed TEXT,
    error_message TEXT,
    status_description TEXT
);
CREATE TABLE sync_settings (
    company_id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    overrides_defaults INTEGER NOT NULL
);
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS companies_order ON companies(created, id);
CREATE INDEX IF NOT EXISTS connections_company ON connections(company_id, created, id);
CREATE INDEX IF NOT EXISTS pulls_company ON pulls(company_id, requested, id);
CREATE INDEX IF NOT EXISTS pulls_connection ON pulls(connection_id, data_type);
CREATE INDEX IF NOT EXISTS pulls_pending ON pulls(due) WHERE completed IS NULL;
"""
TABLES = ("companies", "connections", "pulls", "sync_settings")

COMPANY_JSON = (
    "json_object('id', c.id, 'name', c.name, 'description', c.description, "
    "'redirect', 'https://link.codat.io/company/' || c.id, 'lastSync', c.last_sync, 'created', c.created, "
    "'createdByUserName', c.created_by, 'products', json(c.products), 'tags', json(c.tags), "
    "'referenceParentCompany', NULL, 'referenceSubsidiaryCompanies', json_array())"
)
CONNECTION_JSON = (
    "json_object('id', n.id, 'integrationId', n.integration_id, 'integrationKey', n.integration_key, "
    "'sourceId', n.source_id, 'platformName', n.platform_name, "
    "'linkUrl', 'https://link-api.codat.io/companies/' || n.company_id || '/connections/' || n.id "
    "|| '/start', "
    "'status', n.status, 'created', n.created, 'lastSync', n.last_sync, 'sourceType', n.source_type, "
    "'dataConnectionErrors', json(n.errors), 'connectionInfo', NULL)"
)
COMPANY_COLUMNS = (
    "id",
    "name",
    "description",
    "created",
    "created_by",
    "products",
    "tags",
    "last_sync",
    "settings_profile",
    "history_done",
)
CONNECTION_COLUMNS = (
    "id",
    "company_id",
    "integration_id",
    "integration_key",
    "source_id",
    "platform_name",
    "source_type",
    "status",
    "created",
    "last_sync",
    "errors",
)
PULL_COLUMNS = (
    "id",
    "company_id",
    "connection_id",
    "data_type",
    "status",
    "outcome",
    "requested",
    "fetch_at",
    "due",
    "completed",
    "error_message",
    "status_description",
)


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"


class Store:
    """One SQLite database (in memory, or a file) behind a lock; usable from any thread."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._db = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode = WAL" if path else "PRAGMA journal_mode = MEMORY")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("PRAGMA temp_store = MEMORY")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self):
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, params).fetchone()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else row[0]

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._lock:
            return self._db.execute(sql, params).rowcount

    # -- whole world -------------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return {row["key"]: row["value"] for row in self.all("SELECT key, value FROM meta")}

    def has_world(self) -> bool:
        return self.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'companies'") is not None

    def rebuild(self, companies: Iterable[tuple], connections: Iterable[tuple], meta: dict[str, str]) -> None:
        """Drop everything and load a new world; indexes are built after the bulk insert."""
        with self.transaction() as db:
            for table in TABLES:
                db.execute(f"DROP TABLE IF EXISTS {table}")
            db.execute("DELETE FROM meta")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.executemany(_insert_sql("companies", COMPANY_COLUMNS), companies)
            db.executemany(_insert_sql("connections", CONNECTION_COLUMNS), connections)
            db.execute("UPDATE connections SET seeded_sync = last_sync")
            for statement in INDEXES.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", sorted(meta.items()))

    def keep_seeded_sync(self) -> None:
        """A state file made before `seeded_sync` existed gets it (its lastSyncs taken as seeded)."""
        columns = {row["name"] for row in self.all("PRAGMA table_info(connections)")}
        if "seeded_sync" not in columns:
            self.run("ALTER TABLE connections ADD COLUMN seeded_sync TEXT")
            self.run("UPDATE connections SET seeded_sync = last_sync")

    # -- companies ---------------------------------------------------------------------------------------

    def company(self, company_id: str) -> sqlite3.Row | None:
        return self.one("SELECT * FROM companies WHERE id = ?", (company_id,))

    def count_companies(self, where: str, params: Sequence[Any]) -> int:
        return self.scalar(f"SELECT COUNT(*) FROM companies c WHERE {where}", params)

    def company_json_page(
        self,
        where: str,
        params: Sequence[Any],
        order: str,
        order_params: Sequence[Any],
        limit: int,
        offset: int,
    ) -> list[str]:
        """Company JSON documents (with `dataConnections`) for one page: one query each for both tables."""
        rows = self.all(
            f"SELECT c.id, {COMPANY_JSON} FROM companies c WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, *order_params, limit, offset],
        )
        if not rows:
            return []
        conns = self.connections_json_for([row[0] for row in rows])
        return [_with_connections(row[1], conns.get(row[0], ())) for row in rows]

    def company_json(self, company_id: str) -> str | None:
        row = self.one(f"SELECT c.id, {COMPANY_JSON} FROM companies c WHERE c.id = ?", (company_id,))
        if row is None:
            return None
        return _with_connections(row[1], self.connections_json_for([company_id]).get(company_id, ()))

    def connections_json_for(self, company_ids: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        rows = self.all(
            f"SELECT n.company_id, {CONNECTION_JSON} FROM connections n "
            "WHERE n.company_id IN (SELECT value FROM json_each(?)) ORDER BY n.company_id, n.created, n.id",
            (json.dumps(list(company_ids)),),
        )
        for company_id, doc in rows:
            out.setdefault(company_id, []).append(doc)
        return out

    def insert_company(self, row: dict[str, Any]) -> None:
        self.run(_insert_sql("companies", COMPANY_COLUMNS), [row[c] for c in COMPANY_COLUMNS])

    def update_company(self, company_id: str, name: str, description: str | None, tags: str) -> None:
        self.run(
            "UPDATE companies SET name = ?, description = ?, tags = ? WHERE id = ?",
            (name, description, tags, company_id),
        )

    def set_products(self, company_id: str, products: str) -> None:
        self.run("UPDATE companies SET products = ? WHERE id = ?", (products, company_id))

    def delete_company(self, company_id: str) -> None:
        with self.transaction() as db:
            for table, column in (
                ("pulls", "company_id"),
                ("connections", "company_id"),
                ("sync_settings", "company_id"),
                ("companies", "id"),
            ):
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (company_id,))

    def refresh_company_last_sync(self, company_ids: Iterable[str]) -> None:
        self.run(
            "UPDATE companies SET last_sync = (SELECT MAX(n.last_sync) FROM connections n "
            "WHERE n.company_id = companies.id) WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(set(company_ids))),),
        )

    # -- connections -------------------------------------------------------------------------------------

    def connection(self, connection_id: str) -> sqlite3.Row | None:
        return self.one("SELECT * FROM connections WHERE id = ?", (connection_id,))

    def connections_of(self, company_id: str) -> list[sqlite3.Row]:
        return self.all("SELECT * FROM connections WHERE company_id = ? ORDER BY created, id", (company_id,))

    def connection_json(self, connection_id: str) -> str | None:
        return self.scalar(f"SELECT {CONNECTION_JSON} FROM connections n WHERE n.id = ?", (connection_id,))

    def count_connections(self, company_id: str, where: str, params: Sequence[Any]) -> int:
        return self.scalar(
            f"SELECT COUNT(*) FROM connections n WHERE n.company_id = ? AND {where}", [company_id, *params]
        )

    def connection_json_page(
        self,
        company_id: str,
        where: str,
        params: Sequence[Any],
        order: str,
        order_params: Sequence[Any],
        limit: int,
        offset: int,
    ) -> list[str]:
        rows = self.all(
            f"SELECT {CONNECTION_JSON} FROM connections n WHERE n.company_id = ? AND {where} "
            f"ORDER BY {order} LIMIT ? OFFSET ?",
            [company_id, *params, *order_params, limit, offset],
        )
        return [row[0] for row in rows]

    def insert_connection(self, row: dict[str, Any]) -> None:
        self.run(_insert_sql("connections", CONNECTION_COLUMNS), [row[c] for c in CONNECTION_COLUMNS])

    def set_connection_state(self, connection_id: str, status: str, errors: str) -> None:
        self.run(
            "UPDATE connections SET status = ?, errors = ? WHERE id = ?", (status, errors, connection_id)
        )

    def delete_connection(self, connection_id: str) -> None:
        self.run("DELETE FROM connections WHERE id = ?", (connection_id,))

    # -- sync settings -----------------------------------------------------------------------------------

    def sync_settings(self, company_id: str) -> sqlite3.Row | None:
        return self.one(
            "SELECT settings, overrides_defaults FROM sync_settings WHERE company_id = ?", (company_id,)
        )

    def set_sync_settings(self, company_id: str, settings: str, overrides_defaults: bool) -> None:
        self.run(
            "INSERT INTO sync_settings (company_id, settings, overrides_defaults) VALUES (?, ?, ?) "
            "ON CONFLICT(company_id) DO UPDATE SET settings = excluded.settings, "
            "overrides_defaults = excluded.overrides_defaults",
            (company_id, settings, int(overrides_defaults)),
        )

    # -- pulls -------------------------------------------------------------------------------------------

    def insert_pulls(self, rows: Iterable[tuple]) -> None:
        with self._lock:
            self._db.executemany(_insert_sql("pulls", PULL_COLUMNS), rows)

    def add_history(self, company_id: str, rows: Iterable[tuple]) -> None:
        """Store a company's generated pull history and mark it done, in one transaction."""
        with self.transaction() as db:
            db.executemany(_insert_sql("pulls", PULL_COLUMNS), rows)
            db.execute("UPDATE companies SET history_done = 1 WHERE id = ?", (company_id,))

    def pull(self, company_id: str, pull_id: str) -> sqlite3.Row | None:
        return self.one("SELECT * FROM pulls WHERE company_id = ? AND id = ?", (company_id, pull_id))

    def count_pulls(self, company_id: str, where: str, params: Sequence[Any]) -> int:
        return self.scalar(
            f"SELECT COUNT(*) FROM pulls p WHERE p.company_id = ? AND {where}", [company_id, *params]
        )

    def pull_page(
        self,
        company_id: str,
        where: str,
        params: Sequence[Any],
        order: str,
        order_params: Sequence[Any],
        limit: int,
        offset: int,
    ) -> list[sqlite3.Row]:
        return self.all(
            f"SELECT * FROM pulls p WHERE p.company_id = ? AND {where} ORDER BY {order} LIMIT ? OFFSET ?",
            [company_id, *params, *order_params, limit, offset],
        )

    def pulls_for_status(self, company_id: str) -> list[sqlite3.Row]:
        """Pulls of a company on connections that still exist, oldest first (for data status)."""
        return self.all(
            "SELECT p.* FROM pulls p JOIN connections n ON n.id = p.connection_id "
            "WHERE p.company_id = ? ORDER BY p.requested, p.rowid",
            (company_id,),
        )

    def pending_pull(self, connection_id: str, data_type: str) -> sqlite3.Row | None:
        return self.one(
            "SELECT * FROM pulls WHERE connection_id = ? AND data_type = ? AND completed IS NULL LIMIT 1",
            (connection_id, data_type),
        )

    def fail_pending_pulls(self, connection_id: str, outcome: str, message: str) -> None:
        self.run(
            "UPDATE pulls SET outcome = ?, error_message = ? WHERE connection_id = ? AND completed IS NULL",
            (outcome, message, connection_id),
        )

    def next_pending(self) -> tuple[str | None, str | None]:
        """(earliest fetch_at of a Queued pull, earliest due of any pending pull)."""
        row = self.one(
            "SELECT (SELECT MIN(fetch_at) FROM pulls WHERE completed IS NULL AND status = 'Queued'), "
            "(SELECT MIN(due) FROM pulls WHERE completed IS NULL)"
        )
        return (row[0], row[1]) if row else (None, None)

    def settle(self, now: str, *, report: bool = False) -> list[sqlite3.Row]:
        """Move pending pulls on: Queued -> Fetching past `fetch_at`; finished past `due` (completed = due),
        and keep each touched connection's and company's lastSync at its latest Complete pull. With
        `report`, the pulls it finished (with their connection's lastSync before), to tell as events."""
        with self.transaction() as db:
            finished = (
                db.execute(
                    "SELECT p.company_id, p.connection_id, p.data_type, p.outcome, p.due, p.error_message, "
                    "n.last_sync AS prev_sync FROM pulls p JOIN connections n ON n.id = p.connection_id "
                    "WHERE p.completed IS NULL AND p.due <= ? ORDER BY p.due, p.connection_id",
                    (now,),
                ).fetchall()
                if report
                else []
            )
            db.execute(
                "UPDATE pulls SET status = 'Fetching' WHERE completed IS NULL AND status = 'Queued' "
                "AND fetch_at <= ?",
                (now,),
            )
            touched = db.execute(
                "SELECT DISTINCT connection_id, company_id FROM pulls WHERE completed IS NULL AND due <= ? "
                "AND outcome = 'Complete'",
                (now,),
            ).fetchall()
            db.execute(
                "UPDATE pulls SET status = outcome, completed = due WHERE completed IS NULL AND due <= ?",
                (now,),
            )
            if touched:
                db.execute(
                    "UPDATE connections SET last_sync = NULLIF(MAX(COALESCE(last_sync, ''), COALESCE("
                    "(SELECT MAX(p.completed) FROM pulls p WHERE p.connection_id = connections.id "
                    "AND p.status = 'Complete'), '')), '') "
                    "WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps([row[0] for row in touched]),),
                )
        if touched:
            self.refresh_company_last_sync(row[1] for row in touched)
        return finished

    def record_pull(self, row: tuple) -> None:
        """A finished pull told from outside the schedule: stored, and lastSync moved on if it completed."""
        with self.transaction() as db:
            db.execute(_insert_sql("pulls", PULL_COLUMNS), row)
            pull = dict(zip(PULL_COLUMNS, row, strict=True))
            if pull["status"] == "Complete":
                db.execute(
                    "UPDATE connections SET last_sync = ? "
                    "WHERE id = ? AND (last_sync IS NULL OR last_sync < ?)",
                    (pull["completed"], pull["connection_id"], pull["completed"]),
                )
                db.execute(
                    "UPDATE companies SET last_sync = ? "
                    "WHERE id = ? AND (last_sync IS NULL OR last_sync < ?)",
                    (pull["completed"], pull["company_id"], pull["completed"]),
                )


def _with_connections(company_doc: str, connection_docs: Iterable[str]) -> str:
    return f'{company_doc[:-1]},"dataConnections":[{",".join(connection_docs)}]}}'
