"""Engines, sessions and migrations for the gateway's database (SQLite or PostgreSQL).

* SQLite (development, tests): one file, WAL journal, foreign keys on, a 5 s busy timeout, and
  real transactions: the pysqlite driver's own transaction handling is switched off and every
  transaction starts with an explicit `BEGIN`, so savepoints and transactional DDL (migrations)
  behave as on PostgreSQL. A transaction that reads and then writes while another connection
  commits can fail with "database is locked"; writers that need to avoid that can bind their
  sessions to `engine.execution_options(sqlite_begin="IMMEDIATE")` (takes the write lock at
  `BEGIN`; ignored on PostgreSQL). Relative file paths are resolved against the project root,
  like every other path setting.
* PostgreSQL (production): psycopg 3 with `pool_pre_ping`. `postgresql://` and `postgres://` URLs
  are rewritten to `postgresql+psycopg://`. A schema other than `public` is chosen with the libpq
  `options` parameter, e.g. `...?options=-csearch_path%3Dcrm`; Alembic's version table follows it.

`upgrade_database` runs the Alembic migrations under `crm_gateway/store/alembic` to head without
any `alembic.ini` (the ini file next to this module is only for the `alembic` command line).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from crm_gateway.config import PROJECT_ROOT

ALEMBIC_DIR: Final = Path(__file__).resolve().parent / "alembic"
SQLITE_BUSY_TIMEOUT_MS: Final = 5000
# Execution option read when a SQLite transaction begins: "DEFERRED" (default) or "IMMEDIATE".
SQLITE_BEGIN_OPTION: Final = "sqlite_begin"
_SQLITE_BEGIN_MODES: Final = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})


def resolve_database_url(url: str | URL) -> URL:
    """Normalise a database URL: psycopg 3 for PostgreSQL, absolute paths for SQLite files."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in {"postgresql", "postgres"} and parsed.drivername in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and not _is_sqlite_memory(parsed):
        path = Path(parsed.database or "")
        if not path.is_absolute():
            return parsed.set(database=str(PROJECT_ROOT / path))
    return parsed


def _is_sqlite_memory(url: URL) -> bool:
    database = url.database or ""
    return database in {"", ":memory:"} or database.startswith("file::memory:")


def make_engine(url: str | URL, echo: bool = False) -> Engine:
    """Create an engine for `url` (SQLite file or memory, or PostgreSQL through psycopg 3)."""
    resolved = resolve_database_url(url)
    if resolved.get_backend_name() == "sqlite":
        return _make_sqlite_engine(resolved, echo)
    return create_engine(resolved, echo=echo, pool_pre_ping=True)


def _make_sqlite_engine(url: URL, echo: bool) -> Engine:
    memory = _is_sqlite_memory(url)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if memory:
        # One shared connection, otherwise every pooled connection sees its own empty database.
        kwargs["poolclass"] = StaticPool
    else:
        Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Autocommit at the driver level; transactions are begun explicitly in `_on_begin`.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = str(connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED"))
        if mode.upper() not in _SQLITE_BEGIN_MODES:
            raise ValueError(f"{SQLITE_BEGIN_OPTION} must be one of {sorted(_SQLITE_BEGIN_MODES)}")
        connection.exec_driver_sql(f"BEGIN {mode.upper()}")

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to `engine`; objects stay usable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config() -> Config:
    """An Alembic configuration for the store's migrations, without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    return config


def upgrade_database(url: str | URL | Engine, revision: str = "head") -> None:
    """Run the migrations up to `revision` (default head); safe to call at every start.

    Pass an `Engine` for an in-memory SQLite database (a URL would migrate a throwaway one).
    """
    _run_with_connection(url, lambda config: command.upgrade(config, revision))


def downgrade_database(url: str | URL | Engine, revision: str) -> None:
    """Run the migrations down to `revision` (`"base"` drops everything the store created)."""
    _run_with_connection(url, lambda config: command.downgrade(config, revision))


def head_revision() -> str:
    """The newest revision of the store's migrations."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found under {ALEMBIC_DIR}")
    return head


def database_revision(engine: Engine) -> str | None:
    """The revision the database is at (None before the first migration)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _run_with_connection(target: str | URL | Engine, run: Callable[[Config], None]) -> None:
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with engine.connect() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            run(config)
    finally:
        if engine is not target:
            engine.dispose()
