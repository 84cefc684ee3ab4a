"""The access log's hash chain: gapless seq, links, the head row, concurrent writers, migration."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.store import audit
from crm_gateway.store import customers as store
from crm_gateway.store.db import make_engine, session_scope, upgrade_database
from crm_gateway.store.models import AccessAction, AccessDecision, AccessLogEntry

READ, ALLOWED = AccessAction.READ, AccessDecision.ALLOWED


def _entries(session_factory: sessionmaker[Session]) -> list[AccessLogEntry]:
    with session_factory() as session:
        return list(session.scalars(select(AccessLogEntry).order_by(AccessLogEntry.seq)))


def _assert_chained(entries: list[AccessLogEntry]) -> None:
    prev = audit.GENESIS_HASH
    for number, entry in enumerate(entries, start=1):
        assert entry.seq == number
        assert entry.prev_hash == prev
        assert entry.entry_hash == audit.recompute_hash(entry)
        prev = entry.entry_hash


def test_entries_are_chained_from_genesis_without_gaps(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as session:
        store.log_access(
            session, action=READ, decision=ALLOWED, customer_id="0x" + "01" * 32, purpose="p"
        )
        store.log_accesses(
            session, ["0x" + "02" * 32, "0x" + "03" * 32], action=AccessAction.CREATE,
            decision=ALLOWED, org_id=1, account="0x" + "11" * 20,
        )  # fmt: skip
    # A rolled-back transaction leaves neither an entry nor a gap behind.
    with session_factory() as session:
        store.log_access(session, action=READ, decision=ALLOWED, customer_id=None)
        session.rollback()
    with session_scope(session_factory) as session:
        last = store.log_access(
            session,
            action=AccessAction.APIKEY_CREATE,
            decision=ALLOWED,
            customer_id=None,
            reason="API key 1234 (role AUDITOR)",
        )
        assert last.seq == 4
    entries = _entries(session_factory)
    _assert_chained(entries)
    with session_factory() as session:
        assert audit.read_head(session) == audit.ChainHead(4, str(entries[-1].entry_hash))


def test_the_hash_covers_every_field(session_factory: sessionmaker[Session]) -> None:
    at = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    fields = {
        "seq": 7,
        "at": at,
        "api_key_id": "k",
        "org_id": 1,
        "account": "0x" + "11" * 20,
        "customer_id": "0x" + "22" * 32,
        "purpose": "support",
        "action": READ,
        "decision": ALLOWED,
        "reason": None,
        "prev_hash": "ab" * 32,
    }
    base = audit.entry_hash(**fields)  # type: ignore[arg-type]
    changes = {
        "seq": 8,
        "at": at.replace(microsecond=678902),
        "api_key_id": None,
        "org_id": 2,
        "account": "0x" + "12" * 20,
        "customer_id": None,
        "purpose": "support ",
        "action": AccessAction.EXPORT,
        "decision": AccessDecision.REFUSED,
        "reason": "",
        "prev_hash": "ac" * 32,
    }
    for name, value in changes.items():
        assert audit.entry_hash(**{**fields, name: value}) != base, name  # type: ignore[arg-type]
    # Only the instant counts, not the zone it is written in.
    assert audit.canonical_time(at) == "2025-01-02T03:04:05.678901Z"


def test_concurrent_writers_never_fork_the_chain(session_factory: sessionmaker[Session]) -> None:
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(15):
                with session_scope(session_factory) as session:
                    if i % 3 == 0:
                        store.log_accesses(
                            session,
                            [f"0x{worker:02x}{i:02x}" + "00" * 30] * 2,
                            action=READ,
                            decision=ALLOWED,
                        )
                    else:
                        store.log_access(
                            session, action=READ, decision=ALLOWED, customer_id=None, org_id=worker
                        )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    entries = _entries(session_factory)
    assert len(entries) == 6 * (10 + 5 * 2)
    _assert_chained(entries)


def test_migration_chains_and_renumbers_existing_entries(db_url: str) -> None:
    upgrade_database(db_url, "0003")
    engine: Engine = make_engine(db_url)
    log = sa.table(
        "access_log",
        sa.column("seq", sa.Integer()),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("action", sa.String()),
        sa.column("decision", sa.String()),
        sa.column("customer_id", sa.String()),
    )
    at = datetime(2025, 1, 1, tzinfo=UTC)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.insert(log),
                [
                    {"seq": s, "at": at, "action": "read", "decision": "allowed", "customer_id": c}
                    for s, c in [(1, "a"), (2, "b"), (5, "c"), (9, "d")]
                ],
            )
        upgrade_database(db_url)
        factory = sessionmaker(engine)
        entries = _entries(factory)
        assert [e.customer_id for e in entries] == ["a", "b", "c", "d"]
        _assert_chained(entries)
        with session_scope(factory) as session:
            assert (
                store.log_access(session, action=READ, decision=ALLOWED, customer_id="e").seq == 5
            )
        _assert_chained(_entries(factory))
    finally:
        engine.dispose()


@pytest.mark.parametrize("count", [1, 2, 3])
def test_log_accesses_continues_the_chain(
    session_factory: sessionmaker[Session], count: int
) -> None:
    with session_scope(session_factory) as session:
        store.log_access(session, action=READ, decision=ALLOWED, customer_id=None)
        store.log_accesses(session, ["x"] * count, action=READ, decision=ALLOWED)
        store.log_access(session, action=READ, decision=ALLOWED, customer_id=None)
    _assert_chained(_entries(session_factory))
