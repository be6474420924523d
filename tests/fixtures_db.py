"""Database fixtures: a fresh migrated database per test, on SQLite and (when configured) PostgreSQL.

- `sqlite_url`: a migrated SQLite file in tmp_path (a copy of one the session migrated once).
- `postgres_url`: a migrated, uniquely named database on the server of CONSENT_TEST_POSTGRES_URL
  (created with psycopg from a template the session migrated once, dropped afterwards); skipped when the
  variable is not set.
- `db_url`: both of the above (ids "sqlite", "postgres"; the postgres case carries the `postgres` mark).
- `empty_db_url`: the same two backends, not migrated.
- `engine`: `make_engine(db_url)`, disposed afterwards.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from consent_lifecycle.db.engine import make_engine
from consent_lifecycle.db.migrate import upgrade

POSTGRES_ENV = "CONSENT_TEST_POSTGRES_URL"
BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


def _postgres_server_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} not set")
    return url


def _libpq(url: str) -> str:
    """A SQLAlchemy-style URL as a libpq URI psycopg accepts."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def postgres_database(server_url: str, template: str | None = None) -> Iterator[str]:
    """A fresh database on the server of `server_url`, empty or a copy of database `template`; yields its
    URL, drops it afterwards."""
    name = f"consent_test_{uuid.uuid4().hex[:16]}"
    admin = _libpq(server_url)
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(create)
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _sqlite_url(directory: Path, name: str = "consent.db") -> str:
    return f"sqlite:///{directory / name}"


# Migrating takes ~0.1 s on SQLite and ~0.4 s on PostgreSQL, copying a migrated database a few ms and ~0.15 s:
# each session (each xdist worker) migrates one database of each kind and every test gets a copy of it.


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head, once per session: the template `sqlite_url` copies."""
    directory = tmp_path_factory.mktemp("migrated")
    upgrade(_sqlite_url(directory))
    return directory / "consent.db"


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite: Path) -> str:
    with sqlite3.connect(migrated_sqlite) as source, sqlite3.connect(tmp_path / "consent.db") as target:
        source.backup(target)
    source.close()
    target.close()
    return _sqlite_url(tmp_path)


@pytest.fixture(scope="session")
def migrated_postgres() -> Iterator[str]:
    """A database migrated to head on the server of CONSENT_TEST_POSTGRES_URL, once per session: the
    template `postgres_url` copies (PostgreSQL copies only a database nobody is connected to)."""
    with postgres_database(_postgres_server_url()) as url:
        upgrade(url)  # disposes its engine: no connection is left open
        yield make_url(url).database


@pytest.fixture
def postgres_url(migrated_postgres: str) -> Iterator[str]:
    with postgres_database(_postgres_server_url(), template=migrated_postgres) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield _sqlite_url(tmp_path, "empty.db")
        return
    with postgres_database(_postgres_server_url()) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()
