"""Customer records, blind indexes and the access log, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.customers.profile import CustomerProfile
from crm_gateway.store import customers as store
from crm_gateway.store.db import session_scope
from crm_gateway.store.models import (
    AccessAction,
    AccessDecision,
    ApiKey,
    BlindIndex,
    BlindIndexKind,
    CustomerStatus,
)
from crm_gateway.vault.blind_index import BlindIndexer
from crm_gateway.vault.envelope import TamperedRecordError
from crm_gateway.vault.keys import KeyringFileProvider
from crm_gateway.vault.records import from_hex32, protect, reveal, to_hex32

ORG = 1
INDEXER = BlindIndexer(bytes(range(32)))
EMAIL = BlindIndexKind.EMAIL
PHONE = BlindIndexKind.PHONE

# Distinctive values that must never appear in clear anywhere in the database.
DISTINCTIVE: dict[str, Any] = {
    "given_name": "Quintessa",
    "family_name": "Zwartkopf",
    "email": "Quintessa.Zwartkopf@Example.ORG",
    "phone": "+44 20 7946 0321",
    "postal_address": {
        "lines": ["77 Xylophone Crescent"],
        "city": "Llanfairpwll",
        "postcode": "LL61 5UJ",
        "country": "GB",
    },
    "birth_date": "1971-07-19",
    "custom_attributes": {"loyalty_note": "prefers-marmalade-jam"},
}


@pytest.fixture
def provider(tmp_path: Path) -> KeyringFileProvider:
    return KeyringFileProvider(tmp_path / "keyring.json")


def _register(
    session: Session, provider: KeyringFileProvider, profile: CustomerProfile, generation: int = 0
) -> str:
    """What the customer service will do: derive the id, seal, store, index."""
    customer = INDEXER.customer_id(profile.email_index, generation)
    protected = protect(
        profile.canonical_json(), customer_id=customer, version=1, org_id=ORG, provider=provider
    )
    customer_id = to_hex32(customer)
    store.insert_record(
        session,
        customer_id=customer_id,
        org_id=ORG,
        sealed=protected.sealed,
        commitment=to_hex32(protected.commitment),
    )
    store.set_blind_indexes(session, customer_id, _indexes(profile))
    return customer_id


def _indexes(profile: CustomerProfile) -> dict[BlindIndexKind, str | None]:
    return {
        EMAIL: INDEXER.email(profile.email_index),
        PHONE: INDEXER.phone(profile.phone) if profile.phone else None,
    }


def _open(session: Session, provider: KeyringFileProvider, customer_id: str) -> CustomerProfile:
    record = store.get_active_record(session, customer_id)
    revealed = reveal(
        store.sealed_of(record),
        customer_id=from_hex32(customer_id),
        version=record.version,
        org_id=record.org_id,
        provider=provider,
    )
    assert to_hex32(revealed.commitment) == record.commitment
    return CustomerProfile.from_canonical(revealed.canonical)


def test_register_read_and_find(
    session_factory: sessionmaker[Session], provider: KeyringFileProvider
) -> None:
    profile = CustomerProfile.parse(DISTINCTIVE, phone_region="GB")
    with session_scope(session_factory) as session:
        customer_id = _register(session, provider, profile)
    with session_factory() as session:
        assert _open(session, provider, customer_id) == profile
        record = store.get_record(session, customer_id)
        assert record is not None
        assert record.status is CustomerStatus.ACTIVE
        assert record.version == 1
        assert record.created_at == record.updated_at
        assert record.kek_id == provider.current_kek_id()
        same_email = CustomerProfile.parse({"email": "  quintessa.zwartkopf@example.org "})
        assert store.find_by_blind_index(session, EMAIL, _indexes(same_email)[EMAIL] or "") == (
            customer_id
        )
        same_phone = INDEXER.phone("+442079460321")
        assert store.find_by_blind_index(session, PHONE, same_phone) == customer_id
        assert store.find_by_blind_index(session, PHONE, INDEXER.phone("+442079460322")) is None
        assert store.blind_indexes_of(session, customer_id) == {
            EMAIL: INDEXER.email("quintessa.zwartkopf@example.org"),
            PHONE: same_phone,
        }


def test_no_plaintext_personal_data_in_any_column(
    session_factory: sessionmaker[Session], provider: KeyringFileProvider, engine: Engine
) -> None:
    profile = CustomerProfile.parse(DISTINCTIVE, phone_region="GB")
    with session_scope(session_factory) as session:
        customer_id = _register(session, provider, profile)
        store.log_access(
            session,
            action=AccessAction.READ,
            decision=AccessDecision.ALLOWED,
            customer_id=customer_id,
            purpose="support-ticket-42",
        )
    needles = {
        "Quintessa",
        "Zwartkopf",
        "Example.ORG",
        "2079460321",
        "7946 0321",
        "Xylophone",
        "Llanfairpwll",
        "LL61",
        "1971-07-19",
        "marmalade",
    }
    needles |= {needle.lower() for needle in needles}
    dump = _dump_database(engine)
    for needle in needles:
        assert needle.encode() not in dump, needle


def _dump_database(engine: Engine) -> bytes:
    chunks: list[bytes] = []
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        chunks.append(bytes(value))
                    elif value is not None:
                        chunks.append(str(value).encode())
    return b"\x00".join(chunks)


def test_duplicates_are_refused(
    session_factory: sessionmaker[Session], provider: KeyringFileProvider
) -> None:
    alice = CustomerProfile.parse({"email": "alice@example.com", "phone": "020 7946 0958"})
    with session_scope(session_factory) as session:
        alice_id = _register(session, provider, alice)
    # Same e-mail, different case: same customer id, the primary key refuses it.
    again = CustomerProfile.parse({"email": " ALICE@example.com"})
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        _register(session, provider, again)
    # Another person with Alice's phone: the (kind, value) blind index refuses it.
    bob = CustomerProfile.parse({"email": "bob@example.com", "phone": "+442079460958"})
    with session_factory() as session:
        assert store.find_conflicts(session, _indexes(bob)) == {PHONE: alice_id}
        assert store.find_conflicts(session, _indexes(alice), exclude=alice_id) == {}
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        _register(session, provider, bob)
    # The same HMAC value under another kind is no conflict.
    with session_scope(session_factory) as session:
        carol = CustomerProfile.parse({"email": "carol@example.com"})
        carol_id = _register(session, provider, carol)
        store.set_blind_indexes(session, carol_id, {PHONE: INDEXER.email("alice@example.com")})


def test_update_makes_a_new_version(
    session_factory: sessionmaker[Session], provider: KeyringFileProvider
) -> None:
    profile = CustomerProfile.parse({"email": "alice@example.com", "given_name": "Alice"})
    with session_scope(session_factory) as session:
        customer_id = _register(session, provider, profile)
    changed = profile.model_copy(update={"given_name": "Alicia"})
    with session_scope(session_factory) as session:
        record = store.get_active_record(session, customer_id, for_update=True)
        old_commitment, created = record.commitment, record.updated_at
        protected = protect(
            changed.canonical_json(),
            customer_id=from_hex32(customer_id),
            version=2,
            org_id=ORG,
            provider=provider,
        )
        with pytest.raises(store.StaleVersionError):
            store.update_record(
                session,
                record,
                version=3,
                sealed=protected.sealed,
                commitment=to_hex32(protected.commitment),
            )
        store.update_record(
            session,
            record,
            version=2,
            sealed=protected.sealed,
            commitment=to_hex32(protected.commitment),
        )
    with session_factory() as session:
        record = store.get_active_record(session, customer_id)
        assert record.version == 2
        assert record.commitment != old_commitment
        assert record.updated_at > created
        assert _open(session, provider, customer_id).given_name == "Alicia"


def test_swapped_rows_fail_to_decrypt(
    session_factory: sessionmaker[Session], provider: KeyringFileProvider
) -> None:
    with session_scope(session_factory) as session:
        first = _register(session, provider, CustomerProfile.parse({"email": "a@example.com"}))
        second = _register(session, provider, CustomerProfile.parse({"email": "b@example.com"}))
    with session_scope(session_factory) as session:
        a = store.get_active_record(session, first)
        b = store.get_active_record(session, second)
        a_values = (a.ciphertext, a.nonce, a.wrapped_key, a.kek_id)
        a.ciphertext, a.nonce, a.wrapped_key, a.kek_id = (
            b.ciphertext,
            b.nonce,
            b.wrapped_key,
            b.kek_id,
        )
        b.ciphertext, b.nonce, b.wrapped_key, b.kek_id = a_values
    with session_factory() as session:
        for customer_id in (first, second):
            with pytest.raises(TamperedRecordError):
                _open(session, provider, customer_id)


def test_erasure_leaves_no_key_material(
    session_factory: sessionmaker[Session], provider: KeyringFileProvider, engine: Engine
) -> None:
    profile = CustomerProfile.parse(DISTINCTIVE, phone_region="GB")
    with session_scope(session_factory) as session:
        customer_id = _register(session, provider, profile)
        record = store.get_active_record(session, customer_id)
        secrets_before = [record.ciphertext, record.nonce, record.wrapped_key]
        commitment = record.commitment
    with session_scope(session_factory) as session:
        erased = store.erase_record(session, customer_id)
        assert erased.erased_at is not None
        again = store.erase_record(session, customer_id)  # idempotent
        assert again.erased_at == erased.erased_at
    with session_factory() as session:
        row = store.get_record(session, customer_id)
        assert row is not None
        assert row.status is CustomerStatus.ERASED
        assert (row.ciphertext, row.nonce, row.wrapped_key, row.kek_id) == (None,) * 4
        assert row.commitment == commitment
        assert store.blind_indexes_of(session, customer_id) == {}
        with pytest.raises(store.CustomerErasedError):
            store.get_active_record(session, customer_id)
        with pytest.raises(store.CustomerErasedError):
            store.sealed_of(row)
        assert store.count_records_using_kek(session, provider.current_kek_id()) == 0
    dump = _dump_database(engine)
    for secret in secrets_before:
        assert secret is not None
        assert secret not in dump
    # The same e-mail registers again, as a new identity (next generation).
    with session_scope(session_factory) as session:
        reborn = _register(session, provider, profile, generation=1)
    assert reborn != customer_id
    with session_factory() as session:
        assert _open(session, provider, reborn) == profile
    with pytest.raises(store.CustomerNotFoundError), session_scope(session_factory) as session:
        store.erase_record(session, "0x" + "00" * 32)


def test_an_erased_record_is_revived_once_for_a_returning_customer(
    session_factory: sessionmaker[Session], provider: KeyringFileProvider
) -> None:
    """Erased here but held elsewhere: the same id comes back at version 1 with new contents."""
    profile = CustomerProfile.parse(DISTINCTIVE, phone_region="GB")
    with session_scope(session_factory) as session:
        customer_id = _register(session, provider, profile)
        other = _register(session, provider, CustomerProfile.parse({"email": "o@example.com"}))
    with session_scope(session_factory) as session:
        store.erase_record(session, customer_id)
    with session_factory() as session:
        assert store.erased_record_ids(session, [customer_id, other, "0x" + "00" * 32]) == {
            customer_id
        }
    protected = protect(
        profile.canonical_json(),
        customer_id=from_hex32(customer_id),
        version=1,
        org_id=ORG,
        provider=provider,
    )
    returning = store.NewRecord(
        customer_id=customer_id,
        sealed=protected.sealed,
        commitment=to_hex32(protected.commitment),
        indexes=_indexes(profile),
    )
    with session_scope(session_factory) as session:
        store.revive_records(session, [returning], org_id=ORG)
    with session_factory() as session:
        record = store.get_active_record(session, customer_id)
        assert (record.version, record.erased_at) == (1, None)
        assert _open(session, provider, customer_id) == profile
        assert store.blind_indexes_of(session, customer_id) == {
            k: v for k, v in _indexes(profile).items() if v is not None
        }
        assert store.erased_record_ids(session, [customer_id]) == set()
    # Only an erased record is revived (a concurrent reviver loses), and only this org's.
    with pytest.raises(store.RecordTakenError), session_scope(session_factory) as session:
        store.revive_records(session, [returning], org_id=ORG)
    with session_scope(session_factory) as session:
        store.erase_record(session, customer_id)
    with pytest.raises(store.RecordTakenError), session_scope(session_factory) as session:
        store.revive_records(session, [returning], org_id=ORG + 1)


def test_check_constraint_refuses_half_erased_rows(
    session_factory: sessionmaker[Session], provider: KeyringFileProvider, engine: Engine
) -> None:
    with session_scope(session_factory) as session:
        customer_id = _register(session, provider, CustomerProfile.parse({"email": "a@b.example"}))
    bad_updates = [
        "status = 'erased'",  # key material left behind
        "status = 'erased', wrapped_key = NULL, kek_id = NULL",  # ciphertext left, no erased_at
        "wrapped_key = NULL",  # active without a key
        "status = 'gone'",
        "version = 0",
    ]
    for assignments in bad_updates:
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(
                text(f"UPDATE customer_records SET {assignments} WHERE customer_id = :id"),
                {"id": customer_id},
            )
    with engine.begin() as connection:  # the complete erasure is accepted
        connection.execute(
            text(
                "UPDATE customer_records SET status = 'erased', ciphertext = NULL, nonce = NULL,"
                " wrapped_key = NULL, kek_id = NULL, erased_at = CURRENT_TIMESTAMP"
                " WHERE customer_id = :id"
            ),
            {"id": customer_id},
        )


def test_blind_indexes_cascade_with_their_record(
    session_factory: sessionmaker[Session], provider: KeyringFileProvider
) -> None:
    with session_scope(session_factory) as session:
        customer_id = _register(session, provider, CustomerProfile.parse({"email": "a@b.example"}))
    with session_scope(session_factory) as session:
        session.delete(store.get_active_record(session, customer_id))
    with session_factory() as session:
        assert session.scalars(select(BlindIndex)).all() == []
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        store.set_blind_indexes(session, "0x" + "ab" * 32, {EMAIL: "cd" * 32})


def test_access_log(session_factory: sessionmaker[Session]) -> None:
    customer_id = "0x" + "12" * 32
    with session_scope(session_factory) as session:
        key = ApiKey(
            prefix="crm_LOGTEST1",
            key_hash="ab" * 32,
            org_id=2,
            account="0x" + "11" * 20,
            role="agent",
        )
        session.add(key)
        session.flush()
        first = store.log_access(
            session,
            action=AccessAction.READ,
            decision=AccessDecision.ALLOWED,
            customer_id=customer_id,
            purpose="support",
            api_key_id=key.id,
            org_id=2,
            account=key.account,
        )
        second = store.log_access(
            session,
            action=AccessAction.EXPORT,
            decision=AccessDecision.REFUSED,
            customer_id=customer_id,
            purpose="curiosity",
            reason="role AGENT may not export",
            api_key_id=key.id,
        )
        store.log_access(
            session, action=AccessAction.LOOKUP, decision=AccessDecision.ALLOWED, customer_id=None
        )
        assert second.seq > first.seq
    with session_factory() as session:
        entries = store.access_log_for(session, customer_id)
        assert [(e.action, e.decision) for e in entries] == [
            (AccessAction.READ, AccessDecision.ALLOWED),
            (AccessAction.EXPORT, AccessDecision.REFUSED),
        ]
        assert entries[0].at.tzinfo is not None
        assert entries[1].reason == "role AGENT may not export"
        # Hash-chained from entry 1 (see tests/store/test_audit_chain.py).
        assert entries[0].seq == 1
        assert entries[0].prev_hash == "0" * 64
        assert entries[1].prev_hash == entries[0].entry_hash
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        store.log_access(
            session,
            action=AccessAction.READ,
            decision=AccessDecision.ALLOWED,
            customer_id=customer_id,
            api_key_id="no-such-key",
        )


def test_kek_usage_counts(
    session_factory: sessionmaker[Session], provider: KeyringFileProvider
) -> None:
    with session_scope(session_factory) as session:
        _register(session, provider, CustomerProfile.parse({"email": "a@example.com"}))
    old = provider.current_kek_id()
    new = provider.rotate()
    with session_scope(session_factory) as session:
        _register(session, provider, CustomerProfile.parse({"email": "b@example.com"}))
        _register(session, provider, CustomerProfile.parse({"email": "c@example.com"}))
    with session_factory() as session:
        assert store.kek_usage(session) == {old: 1, new: 2}
        assert store.count_records_using_kek(session, old) == 1
        assert store.count_records_to_rewrap(session, new) == 1
