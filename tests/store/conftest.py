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

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.store.db import make_engine, make_session_factory, upgrade_database

# `db_url` (SQLite and PostgreSQL) and the PostgreSQL fixtures live in tests/conftest.py.


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
