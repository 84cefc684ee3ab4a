"""KEK rotation over the store, on SQLite and PostgreSQL: re-wrap only, resumable, then retire."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.store import customers as store
from crm_gateway.store.db import session_scope
from crm_gateway.store.models import CustomerRecord, CustomerStatus, utcnow
from crm_gateway.vault.keys import KekInUseError, KeyringFileProvider
from crm_gateway.vault.records import from_hex32, protect, reveal, to_hex32
from crm_gateway.vault.rotation import (
    RotationProgress,
    retire_kek,
    retire_unused_keks,
    rotate_all,
)

ORG = 1


@dataclass(frozen=True)
class Snapshot:
    ciphertext: bytes
    nonce: bytes
    wrapped_key: bytes
    kek_id: str
    commitment: str


def _customer_id(n: int) -> bytes:
    return n.to_bytes(32, "big")


def _populate(factory: sessionmaker[Session], provider: KeyringFileProvider, count: int) -> None:
    rows = []
    now = utcnow()
    for n in range(count):
        canonical = b'{"email":"c%d@example.com"}' % n
        protected = protect(
            canonical, customer_id=_customer_id(n), version=1, org_id=ORG, provider=provider
        )
        rows.append(
            {
                "customer_id": to_hex32(_customer_id(n)),
                "org_id": ORG,
                "version": 1,
                "status": CustomerStatus.ACTIVE,
                "ciphertext": protected.sealed.ciphertext,
                "nonce": protected.sealed.nonce,
                "wrapped_key": protected.sealed.wrapped_key.wrapped,
                "kek_id": protected.sealed.wrapped_key.kek_id,
                "commitment": "0x" + protected.commitment.hex(),
                "created_at": now,
                "updated_at": now,
            }
        )
    with session_scope(factory) as session:
        for start in range(0, len(rows), 2_000):
            session.execute(insert(CustomerRecord), rows[start : start + 2_000])


def _snapshot(factory: sessionmaker[Session]) -> dict[str, Snapshot]:
    with factory() as session:
        rows = session.scalars(select(CustomerRecord)).all()
        return {
            row.customer_id: Snapshot(
                row.ciphertext or b"",
                row.nonce or b"",
                row.wrapped_key or b"",
                row.kek_id or "",
                row.commitment,
            )
            for row in rows
        }


def _all_decrypt(factory: sessionmaker[Session], provider: KeyringFileProvider) -> int:
    opened = 0
    with factory() as session:
        for row in session.scalars(select(CustomerRecord)):
            if row.status is CustomerStatus.ERASED:
                continue
            revealed = reveal(
                store.sealed_of(row),
                customer_id=from_hex32(row.customer_id),
                version=row.version,
                org_id=row.org_id,
                provider=provider,
            )
            assert "0x" + revealed.commitment.hex() == row.commitment
            opened += 1
    return opened


def test_rotation_of_10000_records(
    session_factory: sessionmaker[Session], provider: KeyringFileProvider
) -> None:
    count = 10_000
    _populate(session_factory, provider, count)
    old = provider.current_kek_id()
    before = _snapshot(session_factory)
    provider.rotate()
    with pytest.raises(KekInUseError) as refused:
        retire_kek(session_factory, provider, old)
    assert refused.value.count == count

    new = provider.current_kek_id()
    seen: list[int] = []
    started = time.perf_counter()
    progress = rotate_all(
        session_factory, provider, batch_size=1_000, on_progress=lambda p: seen.append(p.done)
    )
    elapsed = time.perf_counter() - started
    print(f"\nre-wrapped {count} data keys in {elapsed:.2f} s")
    assert elapsed < 20
    assert progress.rewrapped == progress.total == count
    assert progress.failed == []
    assert progress.skipped == 0
    assert seen == list(range(1_000, count + 1, 1_000))

    after = _snapshot(session_factory)
    assert after.keys() == before.keys()
    for customer_id, was in before.items():
        now = after[customer_id]
        assert now.ciphertext == was.ciphertext  # records untouched, byte for byte
        assert now.nonce == was.nonce
        assert now.commitment == was.commitment
        assert now.kek_id == new != was.kek_id
        assert now.wrapped_key != was.wrapped_key
    assert _all_decrypt(session_factory, provider) == count

    retire_kek(session_factory, provider, old)
    assert provider.kek_ids() == [new]
    assert _all_decrypt(session_factory, provider) == count  # nothing needed the old KEK
    assert rotate_all(session_factory, provider).total == 0  # a rerun has nothing to do


def test_interrupted_rotation_resumes(
    session_factory: sessionmaker[Session], provider: KeyringFileProvider
) -> None:
    _populate(session_factory, provider, 250)
    old = provider.current_kek_id()
    new = provider.rotate()

    class Interrupted(Exception):
        pass

    def crash_after_two_batches(progress: RotationProgress) -> None:
        if progress.done >= 100:
            raise Interrupted

    with pytest.raises(Interrupted):
        rotate_all(session_factory, provider, batch_size=50, on_progress=crash_after_two_batches)
    with session_factory() as session:
        assert store.kek_usage(session) == {old: 150, new: 100}
    with pytest.raises(KekInUseError):
        retire_kek(session_factory, provider, old)

    resumed = rotate_all(session_factory, provider, batch_size=50)
    assert resumed.total == resumed.rewrapped == 150  # the 100 already done are skipped
    with session_factory() as session:
        assert store.kek_usage(session) == {new: 250}
    assert retire_unused_keks(session_factory, provider) == [old]
    assert _all_decrypt(session_factory, provider) == 250


def test_rotation_skips_erased_and_concurrently_changed_records(
    session_factory: sessionmaker[Session], provider: KeyringFileProvider
) -> None:
    _populate(session_factory, provider, 5)
    old = provider.current_kek_id()
    with session_scope(session_factory) as session:
        store.erase_record(session, to_hex32(_customer_id(0)))
    new = provider.rotate()
    with session_factory() as session:
        candidates = store.records_to_rewrap(session, new, after=None, limit=10)
    assert [c.customer_id for c in candidates] == [to_hex32(_customer_id(n)) for n in range(1, 5)]
    # A stale compare-and-set (the row changed after it was read) updates nothing.
    stale = store.Rewrap(
        customer_id=candidates[0].customer_id,
        old_kek_id=old,
        old_wrapped_key=b"\x00" * 60,
        kek_id=new,
        wrapped_key=b"\x01" * 60,
    )
    with session_scope(session_factory) as session:
        assert store.apply_rewraps(session, [stale]) == 0
    progress = rotate_all(session_factory, provider)
    assert progress.rewrapped == 4
    assert retire_unused_keks(session_factory, provider) == [old]


def test_a_tampered_wrapped_key_is_reported_and_blocks_retirement(
    session_factory: sessionmaker[Session], provider: KeyringFileProvider
) -> None:
    _populate(session_factory, provider, 3)
    old = provider.current_kek_id()
    victim = to_hex32(_customer_id(1))
    with session_scope(session_factory) as session:
        session.execute(
            update(CustomerRecord)
            .where(CustomerRecord.customer_id == victim)
            .values(wrapped_key=b"\xff" * 60)
        )
    provider.rotate()
    progress = rotate_all(session_factory, provider)
    assert progress.rewrapped == 2
    assert progress.failed == [victim]
    with pytest.raises(KekInUseError) as refused:
        retire_kek(session_factory, provider, old)
    assert refused.value.count == 1
    assert retire_unused_keks(session_factory, provider) == []
