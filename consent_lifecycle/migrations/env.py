"""Alembic environment for the consent database.

Used by `consent_lifecycle.db.migrate` (which passes an open connection in `config.attributes`) and by
developers running `alembic` from the repository root (the URL then comes from `-x url=...`,
`sqlalchemy.url`, or the CONSENT_DATABASE_URL setting).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from consent_lifecycle.db.engine import make_engine, normalize_url
from consent_lifecycle.db.models import Base

config = context.config
target_metadata = Base.metadata

#: any constant: serializes concurrent migrations of one PostgreSQL database
_MIGRATION_LOCK = 0x636F6E73656E74  # "consent"


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from consent_lifecycle.settings import Settings

    return Settings().database_url


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    # SQLite table rebuilds (batch mode) must not fire foreign key actions: foreign keys are off while
    # migrating and checked afterwards. The pragma only works outside a transaction.
    toggle_fks = sqlite and not connection.in_transaction()
    if toggle_fks:
        connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
            # make_engine gives SQLite real transactions, so the whole upgrade commits or nothing does
            transactional_ddl=True,
            compare_type=True,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            context.run_migrations()
            if sqlite:
                problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise RuntimeError(f"migration left foreign key violations: {problems[:10]}")
    finally:
        if toggle_fks:
            if connection.in_transaction():
                connection.rollback()
            connection.connection.driver_connection.execute("PRAGMA foreign_keys = ON")


def run_migrations_offline() -> None:
    context.configure(url=normalize_url(_url()), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
