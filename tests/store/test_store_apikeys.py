"""API keys: issue, authenticate, revoke; only a hash is stored."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.security import apikeys
from crm_gateway.security.apikeys import (
    authenticate,
    checksum_account,
    create_api_key,
    generate_api_key,
    revoke,
)
from crm_gateway.store.apikeys import get_api_key_by_prefix, list_api_keys
from crm_gateway.store.db import session_scope

ACCOUNT = "0x52908400098527886E0F7030069857D2E4169EE7"


def test_create_stores_a_hash_and_never_the_key(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    with session_scope(session_factory) as session:
        row, plaintext = create_api_key(session, 7, ACCOUNT.lower(), "operator", "crm app")
    assert plaintext.startswith("crm_")
    assert len(plaintext) == 47
    assert row.prefix == plaintext[:12]
    assert row.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert row.account == ACCOUNT
    assert (row.org_id, row.role, row.label, row.revoked_at) == (7, "operator", "crm app", None)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT * FROM api_keys")).one()
    assert not any(plaintext in str(value) for value in stored)
    assert not any(plaintext[12:] in str(value) for value in stored)


def test_authenticate_and_revoke(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        row, plaintext = create_api_key(session, 1, ACCOUNT, "operator")
        key_id = row.id
    with session_scope(session_factory) as session:
        found = authenticate(session, plaintext)
        assert found is not None
        assert found.id == key_id
        tampered = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
        assert authenticate(session, tampered) is None
        assert authenticate(session, generate_api_key()) is None
        assert authenticate(session, "") is None
        assert authenticate(session, "crm_" + "x" * 500) is None
        assert authenticate(session, plaintext + " ") is None
    with session_scope(session_factory) as session:
        revoked = revoke(session, key_id)
        assert revoked is not None
        assert revoked.revoked_at is not None
        first_time = revoked.revoked_at
    with session_scope(session_factory) as session:
        assert authenticate(session, plaintext) is None
        again = revoke(session, key_id)
        assert again is not None
        assert again.revoked_at == first_time
        assert revoke(session, "no-such-id") is None


def test_list_api_keys(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        a, _ = create_api_key(session, 1, ACCOUNT, "operator")
        b, _ = create_api_key(session, 1, ACCOUNT, "auditor")
        c, _ = create_api_key(session, 2, ACCOUNT, "operator")
        revoke(session, b.id)
        ids = (a.id, b.id, c.id)
    with session_scope(session_factory) as session:
        assert [k.id for k in list_api_keys(session, org_id=1)] == [ids[0]]
        assert {k.id for k in list_api_keys(session, org_id=1, include_revoked=True)} == set(
            ids[:2]
        )
        assert {k.id for k in list_api_keys(session)} == {ids[0], ids[2]}


def test_prefix_collision_retries_without_spoiling_the_transaction(
    session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_scope(session_factory) as session:
        first, first_plain = create_api_key(session, 1, ACCOUNT, "operator")
        fresh = generate_api_key()
        keys = iter([first_plain[:12] + fresh[12:], fresh])
        monkeypatch.setattr(apikeys, "generate_api_key", lambda: next(keys))
        second, second_plain = create_api_key(session, 1, ACCOUNT, "operator")
        assert second_plain == fresh
        first_id = first.id
    with session_scope(session_factory) as session:
        assert authenticate(session, first_plain) is not None
        found = authenticate(session, second_plain)
        assert found is not None
        assert found.id == second.id != first_id
        assert get_api_key_by_prefix(session, fresh[:12]) is not None


@pytest.mark.parametrize(
    "account",
    [
        "",
        "0x123",
        "52908400098527886E0F7030069857D2E4169EE7",  # no 0x
        "0X52908400098527886E0F7030069857D2E4169EE7",
        "0x52908400098527886E0F7030069857D2E4169Ee7",  # mixed case, wrong checksum
        "0x52908400098527886E0F7030069857D2E4169EEG",
        "0x52908400098527886E0F7030069857D2E4169EE\n",
    ],
)
def test_invalid_accounts_are_refused(session: Session, account: str) -> None:
    with pytest.raises(ValueError, match="account"):
        create_api_key(session, 1, account, "operator")


def test_checksum_account_accepts_lower_and_upper_case() -> None:
    assert checksum_account(ACCOUNT.lower()) == ACCOUNT
    assert checksum_account("0x" + ACCOUNT[2:].upper()) == ACCOUNT
    assert checksum_account(ACCOUNT) == ACCOUNT


def test_empty_role_is_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="role"):
        create_api_key(session, 1, ACCOUNT, "")
