"""Alembic environment for the gateway's store (SQLite and PostgreSQL).

Run programmatically by `crm_gateway.store.db.upgrade_database`, which hands over an open
connection in `config.attributes["connection"]`, or from the command line with `alembic.ini`.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, text

from crm_gateway.store.db import make_engine
from crm_gateway.store.models import Base

# Taken by every migration run on PostgreSQL, so gateways starting together migrate one at a time.
_PG_MIGRATION_LOCK = 0x63726D5F6D696772  # "crm_migr"

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if url:
        return url
    from crm_gateway.config import Settings

    return Settings().database_url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: rebuild the table ("move and copy") instead.
        render_as_batch=connection.dialect.name == "sqlite",
        # `make_engine` gives SQLite real transactions (see `store.db`), so its DDL is
        # transactional too: a failed migration leaves nothing behind, as on PostgreSQL.
        transactional_ddl=True,
        compare_type=True,
    )


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    # The pragma is a no-op inside a transaction, so it goes straight to the driver connection
    # (which is in autocommit and not in a transaction yet, see `make_engine`).
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch migrations drop and recreate tables; with foreign keys enforced that would cascade
        # or fail. SQLite's documented procedure: keys off, migrate, check, keys on.
        _sqlite_foreign_keys(connection, on=False)
    try:
        _configure(connection)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise RuntimeError(f"migration left dangling foreign keys: {broken[:5]}")
    finally:
        if sqlite:
            _sqlite_foreign_keys(connection, on=True)


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
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


if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
