"""Database fixtures: every store test runs on a fresh SQLite file and on PostgreSQL.

PostgreSQL comes from `TEST_POSTGRES_URL` (default
`postgresql+psycopg://postgres@127.0.0.1:5432/test`) and is probed once with a 2 s connect timeout;
when it is not reachable the `postgres` variants are skipped with the reason. Each PostgreSQL test
gets its own schema `crm_test_<pid>_<random>`, selected through the connection's `search_path` (the
libpq `options` URL parameter), so the tables and Alembic's `alembic_version` land there; the
schema is dropped afterwards. Nothing else in the database is read or written, and parallel runs
do not collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from crm_gateway.store.db import (
    make_engine,
    make_session_factory,
    resolve_database_url,
    upgrade_database,
)

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCHEMA_PREFIX = "crm_test_"


def _admin_engine(url: str) -> Engine:
    return create_engine(
        resolve_database_url(url),
        poolclass=NullPool,
        connect_args={"connect_timeout": 2},
        isolation_level="AUTOCOMMIT",
    )


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server URL, or a skip when nothing answers there."""
    url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    shown = make_url(url).render_as_string(hide_password=True)
    engine = _admin_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        pytest.skip(f"PostgreSQL not reachable at {shown}: {reason}")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A URL whose connections live in a fresh, empty schema, dropped after the test."""
    schema = f"{SCHEMA_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine(postgres_url)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text("SET lock_timeout = '10s'"))
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file in a not-yet-existing directory, or a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'crm.db'}"
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to head."""
    upgrade_database(db_url)
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session
