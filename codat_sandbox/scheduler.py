"""Codat's scheduled syncs, run on the sandbox clock: when the clock moves forward, every company's due
syncs run on its Linked connections and are told as `read.completed`.

Why set-based: advancing a day at 100k companies makes millions of pull operations; they are computed and
inserted by SQLite in a few statements per day, never one Python step per pull. Only the events (one per
company, connection and sync round) are built row by row, and only when a consumer listens.

When a sync is due: each enabled data type of a company's sync settings (`syncSchedule` hours > 0) runs
every `syncSchedule` hours at a fixed phase of the company (spread over the day by its row number), on each
of its Linked connections whose source type carries the type. The types due at the same instant on one
connection are one sync round: their pulls are requested then and complete `pull_duration_seconds` later
(within the advanced interval), `Complete` or, with `failure_rate`, a failed status; one `read.completed`
(`read.completed.initial` for a connection's first sync) lists them. The first sync at link time
(`fetchOnFirstLink`) is queued by the reconnect route and told when it settles (`World.settle`).
"""

from __future__ import annotations

import threading
from typing import Any

from codat_sandbox import seed
from codat_sandbox.clock import unstamp
from codat_sandbox.codat_types import DATA_TYPE_SOURCE
from codat_sandbox.events import EventSink
from codat_sandbox.store import Store

DAY = 86_400
#: failed pulls of a sync round get one of these statuses and messages (the recoverable ones Codat reports)
FAILURES = (
    ("FetchError", "The platform returned an error while fetching data."),
    ("RateLimitError", "The platform's rate limit was reached; the pull will be retried."),
    ("InternalError", "An internal error occurred while processing the data."),
)

SETTINGS_SQL = """
CREATE TEMP TABLE sched_settings AS
SELECT c.seq AS seq, c.id AS company_id, p.data_type AS data_type, p.schedule * 3600 AS period,
       p.source AS source
FROM companies c JOIN sched_profiles p ON p.profile = c.settings_profile % ?
WHERE NOT EXISTS (SELECT 1 FROM sync_settings s WHERE s.company_id = c.id)
UNION ALL
SELECT c.seq, c.id, json_extract(j.value, '$.dataType'),
       CAST(json_extract(j.value, '$.syncSchedule') AS INTEGER) * 3600, t.source
FROM sync_settings s JOIN companies c ON c.id = s.company_id, json_each(s.settings) j
JOIN sched_sources t ON t.data_type = json_extract(j.value, '$.dataType')
WHERE CAST(json_extract(j.value, '$.syncSchedule') AS INTEGER) > 0
"""
#: one row per pull of the window (a, b]: every due instant of every enabled type, on each Linked
#: connection of its source; `done` is when it completes (by b), `prev_sync` the connection's lastSync
DUE_SQL = """
CREATE TEMP TABLE sched_pulls AS
WITH RECURSIVE due(company_id, data_type, source, period, at) AS (
    SELECT company_id, data_type, source, period,
           :a + 1 + (((seq * 2654435761) % 86400 - (:a + 1)) % period + period) % period
    FROM sched_settings
    UNION ALL
    SELECT company_id, data_type, source, period, at + period FROM due WHERE at + period <= :b
)
SELECT d.company_id AS company_id, n.id AS connection_id, d.data_type AS data_type, d.at AS at,
       MIN(d.at + :duration, :b) AS done, n.last_sync AS prev_sync,
       CASE WHEN abs(random()) % 1000000 < :failure THEN abs(random()) % 3 ELSE -1 END AS failure,
       abs(random()) % 4 != 0 AS modified
FROM due d JOIN connections n
    ON n.company_id = d.company_id AND n.status = 'Linked' AND n.source_type = d.source
WHERE d.at <= :b AND n.created <= strftime('%Y-%m-%dT%H:%M:%SZ', d.at, 'unixepoch')
"""
#: pull ids are random version-4 uuids made by SQLite; statuses and messages of failures from sched_failures
INSERT_SQL = """
INSERT INTO pulls (id, company_id, connection_id, data_type, status, outcome, requested, fetch_at, due,
                   completed, error_message, status_description)
SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-'
             || substr('89ab', 1 + abs(random()) % 4, 1) || substr(hex(randomblob(2)), 2) || '-'
             || hex(randomblob(6))),
       p.company_id, p.connection_id, p.data_type,
       COALESCE(f.status, 'Complete'), COALESCE(f.status, 'Complete'),
       strftime('%Y-%m-%dT%H:%M:%SZ', p.at, 'unixepoch'), strftime('%Y-%m-%dT%H:%M:%SZ', p.at, 'unixepoch'),
       strftime('%Y-%m-%dT%H:%M:%SZ', p.done, 'unixepoch'),
       strftime('%Y-%m-%dT%H:%M:%SZ', p.done, 'unixepoch'),
       f.message, NULL
FROM sched_pulls p LEFT JOIN sched_failures f ON f.n = p.failure
"""
CONNECTION_SYNC_SQL = """
UPDATE connections SET last_sync = x.latest
FROM (SELECT connection_id, strftime('%Y-%m-%dT%H:%M:%SZ', MAX(done), 'unixepoch') AS latest
      FROM sched_pulls WHERE failure < 0 GROUP BY connection_id) x
WHERE connections.id = x.connection_id AND (connections.last_sync IS NULL OR connections.last_sync < x.latest)
"""
COMPANY_SYNC_SQL = """
UPDATE companies SET last_sync = x.latest
FROM (SELECT company_id, strftime('%Y-%m-%dT%H:%M:%SZ', MAX(done), 'unixepoch') AS latest
      FROM sched_pulls WHERE failure < 0 GROUP BY company_id) x
WHERE companies.id = x.company_id AND (companies.last_sync IS NULL OR companies.last_sync < x.latest)
"""
#: one read.completed per (company, connection, round): its payload made by SQLite, oldest first
ROUNDS_SQL = """
WITH rounds AS (
    SELECT p.company_id, p.connection_id, p.at, MAX(p.done) AS done, MIN(p.prev_sync) AS prev_sync,
           json_group_array(json_object(
               'connectionId', p.connection_id, 'dataType', p.data_type,
               'recordsModified', json(CASE WHEN p.failure < 0 AND p.modified THEN 'true' ELSE 'false' END),
               'status', COALESCE(f.status, 'Complete'),
               'issues', CASE WHEN f.status IS NULL THEN json_array() ELSE json_array(json_object(
                   'type', f.status, 'message', f.message,
                   'links', json_object('portal', 'https://app.codat.io/companies/' || p.company_id)))
               END)) AS data_types
    FROM sched_pulls p LEFT JOIN sched_failures f ON f.n = p.failure
    GROUP BY p.company_id, p.connection_id, p.at
)
SELECT r.done AS done, c.tags AS tags,
       r.prev_sync IS NULL AND ROW_NUMBER() OVER w = 1 AS initial,
       json_object(
           'referenceCompany', json_object('id', c.id, 'name', c.name, 'description', c.description,
               'links', json_object('portal', 'https://app.codat.io/companies/' || c.id),
               'tags', json(c.tags)),
           'modifiedFromDate',
               COALESCE(strftime('%Y-%m-%dT%H:%M:%SZ', LAG(r.done) OVER w, 'unixepoch'), r.prev_sync),
           'dataTypes', json(r.data_types)) AS payload
FROM rounds r JOIN companies c ON c.id = r.company_id
WINDOW w AS (PARTITION BY r.connection_id ORDER BY r.at)
ORDER BY r.done, r.connection_id
"""
DROP_DAY_SQL = "DROP TABLE IF EXISTS temp.sched_pulls"
DROP_RUN_SQL = (
    "DROP TABLE IF EXISTS temp.sched_settings",
    "DROP TABLE IF EXISTS temp.sched_profiles",
    "DROP TABLE IF EXISTS temp.sched_sources",
    "DROP TABLE IF EXISTS temp.sched_failures",
)


def _read_event(initial: bool) -> str:
    return "read.completed.initial" if initial else "read.completed"


class SyncScheduler:
    """Runs the syncs that fall due while the clock moves. `enabled` and `failure_rate` are its settings."""

    def __init__(
        self,
        store: Store,
        *,
        enabled: bool = False,
        failure_rate: float = 0.02,
        pull_duration_seconds: int = 60,
    ) -> None:
        self.store = store
        self.enabled = enabled
        self.failure_rate = failure_rate
        self.pull_duration = pull_duration_seconds
        self._lock = threading.Lock()

    def as_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "failure_rate": self.failure_rate}

    def run(self, start: str, end: str, events: EventSink) -> dict[str, int]:
        """The syncs due in (start, end] (stamps), a day at a time; counts of pulls and events."""
        a, b = int(unstamp(start).timestamp()), int(unstamp(end).timestamp())
        totals = {"pulls": 0, "events": 0}
        if not self.enabled or b <= a:
            return totals
        with self._lock:
            try:
                self._prepare()
                for day in range(a, b, DAY):
                    pulls, sent = self._window(day, min(day + DAY, b), events)
                    totals["pulls"] += pulls
                    totals["events"] += sent
            finally:
                with self.store.transaction() as db:
                    db.execute(DROP_DAY_SQL)
                    for statement in DROP_RUN_SQL:
                        db.execute(statement)
        return totals

    def _prepare(self) -> None:
        """The enabled (company, data type, period, source) of every company, for the whole run."""
        profiles = [
            (index, s["dataType"], s["syncSchedule"], DATA_TYPE_SOURCE[s["dataType"]])
            for index, settings in enumerate(seed.SETTINGS_PROFILES)
            for s in settings
            if s.get("syncSchedule", 0) > 0
        ]
        with self.store.transaction() as db:
            for statement in DROP_RUN_SQL:
                db.execute(statement)
            db.execute(
                "CREATE TEMP TABLE sched_profiles (profile INTEGER, data_type TEXT, schedule INTEGER, "
                "source TEXT)"
            )
            db.executemany("INSERT INTO sched_profiles VALUES (?, ?, ?, ?)", profiles)
            db.execute("CREATE TEMP TABLE sched_sources (data_type TEXT PRIMARY KEY, source TEXT)")
            db.executemany("INSERT INTO sched_sources VALUES (?, ?)", sorted(DATA_TYPE_SOURCE.items()))
            db.execute("CREATE TEMP TABLE sched_failures (n INTEGER PRIMARY KEY, status TEXT, message TEXT)")
            db.executemany(
                "INSERT INTO sched_failures VALUES (?, ?, ?)",
                [(n, status, message) for n, (status, message) in enumerate(FAILURES)],
            )
            db.execute(SETTINGS_SQL, (len(seed.SETTINGS_PROFILES),))

    def _window(self, a: int, b: int, events: EventSink) -> tuple[int, int]:
        params = {
            "a": a,
            "b": b,
            "duration": self.pull_duration,
            "failure": int(self.failure_rate * 1_000_000),
        }
        with self.store.transaction() as db:
            db.execute(DROP_DAY_SQL)
            db.execute(DUE_SQL, params)
            pulls = db.execute("SELECT COUNT(*) FROM sched_pulls").fetchone()[0]
            if pulls:
                db.execute(INSERT_SQL)
                db.execute(CONNECTION_SYNC_SQL)
                db.execute(COMPANY_SYNC_SQL)
            rounds = db.execute(ROUNDS_SQL).fetchall() if pulls and events.active else []
        events.publish_many(
            (_read_event(bool(row["initial"])), seed.fmt(row["done"]), row["payload"], row["tags"])
            for row in rounds
        )
        return pulls, len(rounds)
