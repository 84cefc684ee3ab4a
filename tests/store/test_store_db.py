"""Engines, sessions and migrations on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, make_url, select, text
from sqlalchemy.exc import OperationalError

from crm_gateway.config import PROJECT_ROOT
from crm_gateway.store.db import (
    SQLITE_BEGIN_OPTION,
    database_revision,
    downgrade_database,
    head_revision,
    make_engine,
    make_session_factory,
    resolve_database_url,
    session_scope,
    upgrade_database,
)
from crm_gateway.store.models import ApiKey, Base

TABLES = {
    "api_keys",
    "operations",
    "chain_transactions",
    "leases",
    "customer_records",
    "blind_indexes",
    "access_log",
    "indexer_cursor",
    "indexed_blocks",
    "indexed_contracts",
    "chain_events",
    "rm_organizations",
    "rm_members",
    "rm_role_holdings",
    "rm_customers",
    "rm_customer_holders",
    "rm_purposes",
    "rm_consents",
    "rm_consent_changes",
    "audit_chain_head",
    "audit_batches",
    "rm_loyalty_balances",
    "rm_loyalty_movements",
    "erasure_requests",
    "web_sessions",
    "sign_in_nonces",
}


def _api_key(suffix: str) -> ApiKey:
    return ApiKey(
        prefix=f"crm_test{suffix:>4}"[:12],
        key_hash="0" * 64,
        org_id=1,
        account="0x" + "11" * 20,
        role="operator",
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:////abs/crm.db", "sqlite:////abs/crm.db"),
        ("sqlite:///var/crm.db", f"sqlite:///{PROJECT_ROOT / 'var' / 'crm.db'}"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
    ],
)
def test_resolve_database_url(url: str, expected: str) -> None:
    assert resolve_database_url(url) == make_url(expected)


def test_sqlite_engine_creates_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "crm.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA busy_timeout").scalar() == 5000
        assert path.exists()
    finally:
        engine.dispose()


def test_sqlite_memory_database_is_shared_and_migratable() -> None:
    engine = make_engine("sqlite://")
    try:
        upgrade_database(engine)
        assert database_revision(engine) == head_revision()
        with session_scope(make_session_factory(engine)) as session:
            session.add(_api_key("m"))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM api_keys")).scalar() == 1
    finally:
        engine.dispose()


def test_sqlite_reads_hold_no_lock_and_see_the_latest_commit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    try:
        with factory() as reader:
            assert reader.scalars(select(ApiKey)).all() == []
            # Another connection writes and commits while the reader's session is open...
            with session_scope(factory) as writer:
                writer.add(_api_key("w1"))
            # ...and the reader sees it (like READ COMMITTED on PostgreSQL), then writes itself
            # without "database is locked" (a deferred BEGIN would fail the lock upgrade here).
            assert len(reader.scalars(select(ApiKey)).all()) == 1
            reader.add(_api_key("w2"))
            reader.commit()
        with factory() as check:
            assert len(check.scalars(select(ApiKey)).all()) == 2
    finally:
        engine.dispose()


def test_sqlite_writers_wait_for_the_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    try:
        first = factory()
        first.add(_api_key("f1"))
        first.flush()  # BEGIN IMMEDIATE: the write lock is held until commit

        def release_soon() -> None:
            time.sleep(0.3)
            first.commit()

        thread = threading.Thread(target=release_soon)
        thread.start()
        started = time.monotonic()
        with session_scope(factory) as second:
            second.add(_api_key("f2"))
            second.flush()  # waits (busy timeout) instead of failing
        thread.join()
        first.close()
        assert time.monotonic() - started >= 0.2
        with factory() as check:
            assert len(check.scalars(select(ApiKey)).all()) == 2
    finally:
        engine.dispose()


def test_sqlite_begin_immediate_takes_the_write_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    immediate = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    other = make_engine(url)
    try:
        with immediate.connect() as holder, other.connect() as contender:
            holder.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the write lock is held now
            contender.exec_driver_sql("PRAGMA busy_timeout=50")
            with pytest.raises(OperationalError, match="locked"):
                contender.execute(text("DELETE FROM api_keys"))
            contender.rollback()
    finally:
        engine.dispose()
        other.dispose()


def test_migrations_reach_head_and_match_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert database_revision(engine) is None
        upgrade_database(db_url)
        assert database_revision(engine) == head_revision() == "0010"
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        upgrade_database(db_url)  # a second start is a no-op
        assert database_revision(engine) == head_revision()

        downgrade_database(db_url, "base")
        assert database_revision(engine) is None
        assert not TABLES & set(inspect(engine).get_table_names())
        upgrade_database(db_url)
        assert database_revision(engine) == head_revision()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_tables_and_version_table_stay_in_the_test_schema(
    postgres_schema_url: str,
) -> None:
    upgrade_database(postgres_schema_url)
    engine = make_engine(postgres_schema_url)
    with engine.connect() as connection:
        schema: str = connection.execute(text("SELECT current_schema()")).scalar_one()
        assert schema.startswith("crm_test_")
        rows = connection.execute(
            text(
                "SELECT table_schema FROM information_schema.tables "
                "WHERE table_name IN ('alembic_version', 'api_keys', 'operations', "
                "'chain_transactions') AND table_schema = :schema"
            ),
            {"schema": schema},
        ).all()
    engine.dispose()
    assert len(rows) == 4


def test_session_scope_commits_and_rolls_back(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        session.add(_api_key("1"))

    def fail_inside_scope() -> None:
        with session_scope(factory) as session:
            session.add(_api_key("2"))
            session.flush()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_inside_scope()
    with session_scope(factory) as session:
        prefixes = session.scalars(select(ApiKey.prefix)).all()
    assert prefixes == [_api_key("1").prefix]


def test_savepoint_rolls_back_only_the_nested_part(engine: Engine) -> None:
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        session.add(_api_key("a"))
        nested = session.begin_nested()
        session.add(_api_key("b"))
        session.flush()
        nested.rollback()
        session.add(_api_key("c"))
    with session_scope(factory) as session:
        prefixes = sorted(session.scalars(select(ApiKey.prefix)).all())
    assert prefixes == sorted([_api_key("a").prefix, _api_key("c").prefix])


def test_a_failed_migration_leaves_nothing_behind(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_create_index = Operations.create_index
    calls = 0

    def failing_create_index(self: Operations, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("disk on fire")
        return real_create_index(self, *args, **kwargs)

    monkeypatch.setattr(Operations, "create_index", failing_create_index)
    with pytest.raises(RuntimeError, match="disk on fire"):
        upgrade_database(db_url)
    engine = make_engine(db_url)
    try:
        assert database_revision(engine) is None
        assert not TABLES & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
