"""Engines for the consent database: SQLite (default, a file) or PostgreSQL (psycopg 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

#: how long a SQLite connection waits for another writer before "database is locked"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_MMAP_BYTES = 256 * 1024 * 1024

_POSTGRES_ALIASES = {"postgres", "postgresql"}


def normalize_url(url: str | URL) -> URL:
    """`url` as a SQLAlchemy URL; `postgresql://` and `postgres://` become `postgresql+psycopg://`."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError) as exc:
        raise ValueError(f"not a database URL: {_redacted(url)} ({exc})") from None
    if parsed.drivername in _POSTGRES_ALIASES:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _redacted(url: str | URL) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError, TypeError):
        return "<unparseable URL>"


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(database)


def make_engine(
    url: str | URL,
    *,
    echo: bool = False,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    sqlite_immediate: bool = False,
    **kwargs: Any,
) -> Engine:
    """An Engine for `url`.

    SQLite: creates the parent directory of a file database; every connection gets `foreign_keys=ON`,
    `journal_mode=WAL`, `busy_timeout`; transactions are real (`BEGIN` is emitted by SQLAlchemy, not
    guessed by the driver), so SQLite transactions are serializable and DDL is transactional.
    `sqlite_immediate`: every transaction takes the write lock as it begins (`BEGIN IMMEDIATE`), so
    transactions that read, then write, wait for each other instead of failing with "database is locked"
    when another one committed in between (what the flows' batch tasks, side by side, need).
    PostgreSQL: psycopg 3, session time zone UTC, pre-ping.
    """
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = sqlite_file(parsed)
        if path is not None:
            path.expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, echo=echo, **kwargs)
        _configure_sqlite(engine, busy_timeout_ms, "BEGIN IMMEDIATE" if sqlite_immediate else "BEGIN")
        return engine
    if backend == "postgresql":
        connect_args = {"options": "-c timezone=UTC", **kwargs.pop("connect_args", {})}
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, echo=echo, connect_args=connect_args, **kwargs)
    raise ValueError(
        f"unsupported database {_redacted(url)}: use sqlite:///path/to/file.db or postgresql://..."
    )


def _configure_sqlite(engine: Engine, busy_timeout_ms: int, begin: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # let SQLAlchemy (the "begin" hook below) own transactions, not pysqlite's implicit BEGIN
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            # reads through a memory map instead of a read() per page missing from the 2 MB page cache: a
            # batch of 10,000 access checks over 10k companies took 0.29 s of CPU, 0.20 s with it
            cursor.execute(f"PRAGMA mmap_size = {SQLITE_MMAP_BYTES}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def lock_company(connection: Connection | Session, company_id: str) -> None:
    """Serialize this transaction with every other one that locks the same company (until it ends).

    Call it FIRST in the transaction, before any read, whenever a decision must not race another writer
    for the company (rule 1: a grant that commits before a deletion executes wins).
    PostgreSQL: a transaction-scoped advisory lock on the company id. SQLite: the database's single write
    lock (a no-op write), which serializes with every writer; it must come before any read or SQLite may
    answer "database is locked" instead of waiting.
    """
    bind = connection.get_bind() if isinstance(connection, Session) else connection
    if bind.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"company:{company_id}"}
        )
    else:
        connection.execute(text("UPDATE companies SET id = id WHERE id = :id"), {"id": company_id})


def statement_connection(engine: Engine) -> Connection:
    """A connection for one read statement (the API's hot path). On PostgreSQL in autocommit: one statement
    sees one consistent snapshot anyway, and the BEGIN and ROLLBACK round trips were half an access check's
    time. (On SQLite, switching the isolation level per checkout costs more than the transaction does.)"""
    db = engine.connect()
    return db.execution_options(isolation_level="AUTOCOMMIT") if engine.dialect.name == "postgresql" else db
