"""Engines, sessions and migrations for the gateway's database (SQLite or PostgreSQL).

* SQLite (development, tests): one file, WAL journal, foreign keys on, a 5 s busy timeout.
  Transactions are managed here rather than by the pysqlite driver, to behave like PostgreSQL's
  READ COMMITTED without SQLite's lock-upgrade failures: reads run on their own (each sees the
  latest commit, holds no lock), and the first statement that writes (DML, DDL, SAVEPOINT) opens
  `BEGIN IMMEDIATE`, which waits up to the busy timeout for the single write lock and then holds it
  until commit or rollback. So a read-then-write never fails with "database is locked" because
  another connection committed in between (a deferred `BEGIN` would), savepoints nest properly,
  and migrations are atomic. Keep write transactions short: they exclude every other writer.
  A caller that needs one snapshot across several reads can bind a session to
  `engine.execution_options(sqlite_begin="DEFERRED")` (or "IMMEDIATE" to lock before reading);
  the option is ignored on PostgreSQL. Relative file paths are resolved against the project root,
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
from sqlalchemy.pool import ConnectionPoolEntry, SingletonThreadPool, StaticPool

from crm_gateway.config import PROJECT_ROOT

ALEMBIC_DIR: Final = Path(__file__).resolve().parent / "alembic"
SQLITE_BUSY_TIMEOUT_MS: Final = 5000
SQLITE_POOL_SIZE: Final = 48
SQLITE_POOL_OVERFLOW: Final = 16
# Execution option: begin SQLite transactions eagerly, with "DEFERRED", "IMMEDIATE" or "EXCLUSIVE",
# instead of lazily (`BEGIN IMMEDIATE` before the first write).
SQLITE_BEGIN_OPTION: Final = "sqlite_begin"
_SQLITE_BEGIN_MODES: Final = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})
# Statements that neither write nor open a transaction of their own.
_SQLITE_READ_ONLY: Final = frozenset(
    {"SELECT", "PRAGMA", "EXPLAIN", "VALUES", "BEGIN", "COMMIT", "END", "ROLLBACK", "RELEASE"}
)


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


def make_local_reader(engine: Engine) -> Engine | None:
    """For an engine on a SQLite file: a read-only engine with one connection per thread.

    SQLite reads run in this process (no network, and in WAL mode never waiting for a writer), so
    the event loop's thread can make them itself, quicker than handing each to the thread pool.
    That thread gets its own connection, which it never waits for (a pooled one could keep it
    waiting while other threads hold the whole pool), with `PRAGMA query_only` so nothing read
    there can write. None for other databases, whose reads are network round trips and belong in
    the thread pool (and for in-memory SQLite, which another engine would not see).
    """
    url = engine.url
    if url.get_backend_name() != "sqlite" or _is_sqlite_memory(url):
        return None
    return _make_sqlite_engine(url, bool(engine.echo), per_thread=True)


def _make_sqlite_engine(url: URL, echo: bool, *, per_thread: bool = False) -> Engine:
    memory = _is_sqlite_memory(url)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if per_thread:
        kwargs["poolclass"] = SingletonThreadPool
        kwargs["pool_size"] = SQLITE_POOL_SIZE
    elif memory:
        # One shared connection, otherwise every pooled connection sees its own empty database.
        kwargs["poolclass"] = StaticPool
    else:
        Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
        # Room for every thread that may hold a connection at once: the served gateway runs up
        # to 40 requests in its thread pool, plus the pipeline and indexer threads. With the
        # default pool (5, overflow 10) most requests under load opened a new connection (file
        # open, PRAGMAs, schema parse) and closed it again. Connections are opened lazily.
        kwargs["pool_size"] = SQLITE_POOL_SIZE
        kwargs["max_overflow"] = SQLITE_POOL_OVERFLOW
    engine = create_engine(url, echo=echo, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        # Autocommit at the driver level; transactions are begun by the listeners below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if per_thread:
                cursor.execute("PRAGMA query_only=ON")
            elif not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION)
        if mode is None:
            return  # lazily, in `_before_execute`
        if str(mode).upper() not in _SQLITE_BEGIN_MODES:
            raise ValueError(f"{SQLITE_BEGIN_OPTION} must be one of {sorted(_SQLITE_BEGIN_MODES)}")
        connection.exec_driver_sql(f"BEGIN {str(mode).upper()}")

    @event.listens_for(engine, "before_cursor_execute")
    def _before_execute(
        connection: Connection,
        cursor: sqlite3.Cursor,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        driver = cursor.connection
        if driver.in_transaction or _sqlite_first_word(statement) in _SQLITE_READ_ONLY:
            return
        if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return
        driver.execute("BEGIN IMMEDIATE")

    return engine


def _sqlite_first_word(statement: str) -> str:
    words = statement.lstrip(" \t\r\n(").split(None, 1)
    return words[0].upper() if words else ""


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
            # SQLite: hold the write lock from the version check to the commit, so two processes
            # starting together migrate one after the other (PostgreSQL: an advisory lock, env.py).
            connection.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            config = alembic_config()
            config.attributes["connection"] = connection
            run(config)
    finally:
        if engine is not target:
            engine.dispose()
