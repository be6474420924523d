"""Database fixtures: a fresh migrated database per test, on SQLite and (when configured) PostgreSQL.

- `sqlite_url`: a migrated SQLite file in tmp_path.
- `postgres_url`: a migrated, uniquely named database on the server of CONSENT_TEST_POSTGRES_URL
  (created with psycopg, dropped afterwards); skipped when the variable is not set.
- `db_url`: both of the above (ids "sqlite", "postgres"; the postgres case carries the `postgres` mark).
- `empty_db_url`: the same two backends, not migrated.
- `engine`: `make_engine(db_url)`, disposed afterwards.
"""

from __future__ import annotations

import os
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
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh empty database on the server of `server_url`; yields its URL, drops it afterwards."""
    name = f"consent_test_{uuid.uuid4().hex[:16]}"
    admin = _libpq(server_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _sqlite_url(directory: Path, name: str = "consent.db") -> str:
    return f"sqlite:///{directory / name}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = _sqlite_url(tmp_path)
    upgrade(url)
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    server = _postgres_server_url()
    with postgres_database(server) as url:
        upgrade(url)
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
