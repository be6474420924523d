"""Alembic migrations, run programmatically (no alembic.ini needed at runtime).

The scripts live in the package (`consent_lifecycle/migrations`), so this works from an installed wheel.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import URL

from consent_lifecycle.db.engine import make_engine


def script_location() -> Path:
    """The directory of the migration scripts inside the installed package."""
    resource = files("consent_lifecycle") / "migrations"
    with as_file(resource) as path:  # a real directory for a normal or editable install
        return Path(path)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config pointing at the packaged scripts; `connection`, if given, is used by env.py."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    """The head revision of the packaged migrations."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"expected one migration head, found {heads}")
    return heads[0]


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at `url` up to `revision` (idempotent: a second call does nothing)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            command.upgrade(alembic_config(connection), revision)
    finally:
        engine.dispose()


def downgrade(url: str | URL, revision: str) -> None:
    """Migrate the database at `url` down to `revision` ("base" = empty)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            command.downgrade(alembic_config(connection), revision)
    finally:
        engine.dispose()


def current(url: str | URL) -> str | None:
    """The revision the database at `url` is at; None for a database never migrated."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
