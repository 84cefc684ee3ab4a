"""`crm-chaincode keys`: rotate over 10,000 records, resume an interrupted run, retire old KEKs.

Records are made through the vault and the store directly (no chain): the commands need only the
keyring file and the database, which they read from the environment as they do for an admin.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from crm_gateway.cli import app
from crm_gateway.config import Settings, get_settings
from crm_gateway.customers.profile import CustomerProfile
from crm_gateway.store import customers as store
from crm_gateway.store.db import make_engine, make_session_factory, session_scope, upgrade_database
from crm_gateway.store.models import CustomerRecord, CustomerStatus, utcnow
from crm_gateway.vault.keys import KeyringFileProvider
from crm_gateway.vault.records import from_hex32, protect, reveal, to_hex32
from tests.conftest import make_settings

ORG = 1
GRACE_0 = ["--grace", "0"]


@pytest.fixture
def keys_settings(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings (SQLite or PostgreSQL) in the environment, a migrated database, a keyring."""
    settings = make_settings(tmp_path, database_url=db_url)
    for name, value in settings.model_dump().items():
        if value is not None:
            raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            monkeypatch.setenv(name.upper(), str(raw))
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    upgrade_database(settings.database_url)
    yield settings
    get_settings.cache_clear()


@pytest.fixture
def sessions(keys_settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(keys_settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def provider(keys_settings: Settings) -> KeyringFileProvider:
    return KeyringFileProvider(keys_settings.path(keys_settings.vault_keyring_file))


def _profile(n: int) -> CustomerProfile:
    return CustomerProfile.parse(
        {
            "given_name": f"Given{n}",
            "family_name": "Rotation",
            "email": f"customer{n}@example.com",
            "custom_attributes": {"n": n},
        }
    )


def _populate(
    sessions: sessionmaker[Session], provider: KeyringFileProvider, count: int
) -> dict[str, bytes]:
    """`count` sealed customer records, inserted in bulk; their canonical profiles by id."""
    rows: list[dict[str, Any]] = []
    canonical: dict[str, bytes] = {}
    now = utcnow()
    for n in range(count):
        customer_id = n.to_bytes(32, "big")
        profile = _profile(n).canonical_json()
        protected = protect(
            profile, customer_id=customer_id, version=1, org_id=ORG, provider=provider
        )
        canonical[to_hex32(customer_id)] = profile
        rows.append(
            {
                "customer_id": to_hex32(customer_id),
                "org_id": ORG,
                "version": 1,
                "status": CustomerStatus.ACTIVE,
                "ciphertext": protected.sealed.ciphertext,
                "nonce": protected.sealed.nonce,
                "wrapped_key": protected.sealed.wrapped_key.wrapped,
                "kek_id": protected.sealed.wrapped_key.kek_id,
                "commitment": to_hex32(protected.commitment),
                "created_at": now,
                "updated_at": now,
            }
        )
    with session_scope(sessions) as session:
        for start in range(0, count, 2_000):
            session.execute(insert(CustomerRecord), rows[start : start + 2_000])
    return canonical


def _all_decrypt(
    sessions: sessionmaker[Session], provider: KeyringFileProvider, expected: dict[str, bytes]
) -> None:
    """Every record opens (fresh provider: only what is in the keyring file) to its profile."""
    fresh = KeyringFileProvider(provider.path)
    opened = 0
    with sessions() as session:
        for record in session.scalars(select(CustomerRecord)):
            revealed = reveal(
                store.sealed_of(record),
                customer_id=from_hex32(record.customer_id),
                version=record.version,
                org_id=record.org_id,
                provider=fresh,
            )
            assert revealed.canonical == expected[record.customer_id]
            assert to_hex32(revealed.commitment) == record.commitment
            assert CustomerProfile.from_canonical(revealed.canonical).email.startswith("customer")
            opened += 1
    assert opened == len(expected)


def _usage(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return store.kek_usage(session)


def _invoke(*arguments: str) -> Any:
    return CliRunner().invoke(app, list(arguments))


def _row(table: str, kek_id: str) -> list[str]:
    """The cells of the `keys list` row of `kek_id`."""
    [line] = [line for line in table.splitlines() if kek_id in line]
    return [cell.strip() for cell in re.split(r"[│┃]", line) if cell.strip()]


def _one_sentence_failure(result: Any, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_rotate_10000_records_then_retire_the_old_kek(
    keys_settings: Settings, sessions: sessionmaker[Session], provider: KeyringFileProvider
) -> None:
    started = time.perf_counter()
    count = 10_000
    profiles = _populate(sessions, provider, count)
    old = provider.current_kek_id()
    populated = time.perf_counter()

    listed = _invoke("keys", "list")
    assert listed.exit_code == 0, listed.output
    assert _row(listed.output, old)[2:] == ["current", str(count)]
    _one_sentence_failure(_invoke("keys", "retire", old, *GRACE_0), "is the current KEK")

    rotated = _invoke("keys", "rotate")
    assert rotated.exit_code == 0, rotated.output
    new = provider.current_kek_id()
    assert new != old
    assert f"new KEK {new} (replaces {old})" in rotated.output
    assert f"re-wrapped {count} data key(s) under {new}; 0 skipped" in rotated.output
    assert "0 failed" in rotated.output
    assert _usage(sessions) == {new: count}
    rotated_at = time.perf_counter()
    _all_decrypt(sessions, provider, profiles)

    # Right after a rotation the grace period protects a record still being committed.
    too_soon = _invoke("keys", "retire", old)
    _one_sentence_failure(too_soon, "may still be committing")
    retired = _invoke("keys", "retire", old, *GRACE_0)
    assert retired.exit_code == 0, retired.output
    assert f"retired KEK {old}" in retired.output

    keyring = json.loads(provider.path.read_text())
    assert [kek["id"] for kek in keyring["keks"]] == [new]
    assert [entry["id"] for entry in keyring["retired"]] == [old]
    assert old not in {kek["id"] for kek in keyring["keks"]}
    assert provider.kek_ids() == [new]
    _all_decrypt(sessions, provider, profiles)  # nothing needed the old KEK any more

    _one_sentence_failure(_invoke("keys", "retire", old, *GRACE_0), "was already retired")
    _one_sentence_failure(_invoke("keys", "retire", "kek-nope", *GRACE_0), "no KEK kek-nope")
    after = _invoke("keys", "list")
    assert _row(after.output, old)[2].startswith("retired 20")
    assert _row(after.output, new)[2:] == ["current", str(count)]
    elapsed = time.perf_counter() - started
    print(
        f"\n{count} records: populate {populated - started:.1f} s, "
        f"rotate {rotated_at - populated:.1f} s, total {elapsed:.1f} s"
    )
    assert elapsed < 30


def test_an_interrupted_rotation_resumes_without_a_new_kek(
    keys_settings: Settings,
    sessions: sessionmaker[Session],
    provider: KeyringFileProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    profiles = _populate(sessions, provider, 300)
    old = provider.current_kek_id()
    real_apply = store.apply_rewraps
    calls = 0

    def apply_then_die(session: Session, rewraps: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt  # Ctrl-C while the third batch is being written
        return real_apply(session, rewraps)

    monkeypatch.setattr(store, "apply_rewraps", apply_then_die)
    interrupted = _invoke("keys", "rotate", "--batch-size", "50")
    monkeypatch.setattr(store, "apply_rewraps", real_apply)
    assert interrupted.exit_code == 130, interrupted.output
    assert "interrupted with 200 record(s) left" in interrupted.output
    new = provider.current_kek_id()
    assert new != old
    assert _usage(sessions) == {old: 200, new: 100}  # two batches committed, the third not

    _one_sentence_failure(
        _invoke("keys", "retire", old, *GRACE_0), f"KEK {old} is still used by 200 record(s)"
    )
    unused = _invoke("keys", "retire", "--unused", *GRACE_0)
    assert unused.exit_code == 0, unused.output
    assert "no KEK to retire" in unused.output
    assert f"{old} (200 record(s))" in unused.output
    listed = _invoke("keys", "list")
    assert "200 record(s) are not under the current KEK" in listed.output

    resumed = _invoke("keys", "rotate", "--batch-size", "50")
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming the rotation to KEK {new}: 200 record(s)" in resumed.output
    assert "re-wrapped 200 data key(s)" in resumed.output
    assert provider.kek_ids() == [old, new]  # no third KEK
    assert _usage(sessions) == {new: 300}
    _all_decrypt(sessions, provider, profiles)

    retired = _invoke("keys", "retire", "--unused", *GRACE_0)
    assert retired.exit_code == 0, retired.output
    assert f"retired KEK {old}" in retired.output
    assert provider.kek_ids() == [new]

    # Fully applied now: the next rotate is a real rotation again.
    again = _invoke("keys", "rotate")
    assert again.exit_code == 0, again.output
    newest = provider.current_kek_id()
    assert newest != new
    assert f"new KEK {newest} (replaces {new})" in again.output
    assert _usage(sessions) == {newest: 300}


def test_a_record_that_will_not_unwrap_is_reported_and_keeps_its_kek(
    keys_settings: Settings, sessions: sessionmaker[Session], provider: KeyringFileProvider
) -> None:
    _populate(sessions, provider, 5)
    old = provider.current_kek_id()
    victim = to_hex32((3).to_bytes(32, "big"))
    with session_scope(sessions) as session:
        session.execute(
            update(CustomerRecord)
            .where(CustomerRecord.customer_id == victim)
            .values(wrapped_key=b"\xff" * 60)
        )
    rotated = _invoke("keys", "rotate")
    assert rotated.exit_code == 1, rotated.output
    assert "re-wrapped 4 data key(s)" in rotated.output
    assert "1 record(s) could not be re-wrapped" in rotated.output
    assert victim in rotated.output
    first = provider.current_kek_id()
    _one_sentence_failure(
        _invoke("keys", "retire", old, *GRACE_0), f"KEK {old} is still used by 1 record(s)"
    )
    # A rerun resumes (the broken record is still behind) rather than making a KEK ...
    rerun = _invoke("keys", "rotate")
    assert "resuming the rotation" in rerun.output
    assert provider.current_kek_id() == first
    # ... unless a new KEK is asked for explicitly.
    forced = _invoke("keys", "rotate", "--new-kek")
    assert f"replaces {first}" in forced.output
    assert _usage(sessions) == {old: 1, provider.current_kek_id(): 4}


def test_usage_errors_and_a_missing_keyring(keys_settings: Settings) -> None:
    missing = _invoke("keys", "list")
    _one_sentence_failure(missing, "no keyring at")
    assert not keys_settings.path(keys_settings.vault_keyring_file).exists()  # not created
    both = _invoke("keys", "retire", "kek-x", "--unused")
    assert both.exit_code == 2
    assert "give either a KEK id or --unused" in both.output


def test_a_record_committed_under_the_old_kek_after_the_run_is_picked_up_by_a_rerun(
    keys_settings: Settings,
    sessions: sessionmaker[Session],
    provider: KeyringFileProvider,
    tmp_path: Path,
) -> None:
    _populate(sessions, provider, 3)
    old = provider.current_kek_id()
    # A gateway that read the keyring before the rotation (a copy of it as it was then) ...
    stale_path = tmp_path / "stale" / "keyring.json"
    stale_path.parent.mkdir(mode=0o700)
    shutil.copy2(provider.path, stale_path)
    stale = KeyringFileProvider(stale_path)
    rotated = _invoke("keys", "rotate")
    assert rotated.exit_code == 0, rotated.output
    # ... commits a record with its data key wrapped under the old KEK after the run passed.
    customer_id = (99).to_bytes(32, "big")
    protected = protect(
        _profile(99).canonical_json(),
        customer_id=customer_id,
        version=1,
        org_id=ORG,
        provider=stale,
    )
    with session_scope(sessions) as session:
        store.insert_record(
            session,
            customer_id=to_hex32(customer_id),
            org_id=ORG,
            sealed=protected.sealed,
            commitment=to_hex32(protected.commitment),
        )
    assert _usage(sessions) == {old: 1, provider.current_kek_id(): 3}
    _one_sentence_failure(
        _invoke("keys", "retire", old, *GRACE_0), f"KEK {old} is still used by 1 record(s)"
    )
    resumed = _invoke("keys", "rotate")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming the rotation" in resumed.output
    assert "re-wrapped 1 data key(s)" in resumed.output
    assert _usage(sessions) == {provider.current_kek_id(): 4}
