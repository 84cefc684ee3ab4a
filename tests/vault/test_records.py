"""Sealed customer records: the AAD binds customer, version and organisation; swaps fail."""

from __future__ import annotations

import dataclasses

import pytest

from crm_gateway.vault.commitment import commit
from crm_gateway.vault.envelope import TamperedRecordError
from crm_gateway.vault.keys import KeyringFileProvider
from crm_gateway.vault.records import (
    from_hex32,
    pack_payload,
    protect,
    record_aad,
    reveal,
    to_hex32,
    unpack_payload,
)

ALICE = b"\x01" * 32
BOB = b"\x02" * 32
PROFILE_A = b'{"email":"alice@example.com"}'
PROFILE_B = b'{"email":"bob@example.com"}'


def test_protect_and_reveal(provider: KeyringFileProvider) -> None:
    protected = protect(PROFILE_A, customer_id=ALICE, version=1, org_id=7, provider=provider)
    assert PROFILE_A not in protected.sealed.ciphertext
    revealed = reveal(protected.sealed, customer_id=ALICE, version=1, org_id=7, provider=provider)
    assert revealed.canonical == PROFILE_A
    assert len(revealed.salt) == 32
    assert revealed.commitment == protected.commitment == commit(PROFILE_A, revealed.salt)


def test_each_version_gets_a_new_salt(provider: KeyringFileProvider) -> None:
    one = protect(PROFILE_A, customer_id=ALICE, version=1, org_id=1, provider=provider)
    two = protect(PROFILE_A, customer_id=ALICE, version=2, org_id=1, provider=provider)
    assert one.commitment != two.commitment


def test_swapped_rows_are_detected(provider: KeyringFileProvider) -> None:
    alice = protect(PROFILE_A, customer_id=ALICE, version=1, org_id=1, provider=provider)
    bob = protect(PROFILE_B, customer_id=BOB, version=1, org_id=1, provider=provider)
    with pytest.raises(TamperedRecordError):
        reveal(bob.sealed, customer_id=ALICE, version=1, org_id=1, provider=provider)
    with pytest.raises(TamperedRecordError):
        reveal(alice.sealed, customer_id=BOB, version=1, org_id=1, provider=provider)
    # Swapping only the ciphertexts (each row keeping its own nonce and key) fails as well.
    mixed = dataclasses.replace(alice.sealed, ciphertext=bob.sealed.ciphertext)
    with pytest.raises(TamperedRecordError):
        reveal(mixed, customer_id=ALICE, version=1, org_id=1, provider=provider)


@pytest.mark.parametrize(("version", "org_id"), [(2, 1), (1, 2), (0, 1)])
def test_other_version_or_organisation_is_detected(
    provider: KeyringFileProvider, version: int, org_id: int
) -> None:
    sealed = protect(PROFILE_A, customer_id=ALICE, version=1, org_id=1, provider=provider).sealed
    with pytest.raises(TamperedRecordError):
        reveal(sealed, customer_id=ALICE, version=version, org_id=org_id, provider=provider)


def test_aad_and_payload_layout() -> None:
    aad = record_aad(ALICE, 3, 9)
    assert aad.endswith(ALICE + (3).to_bytes(8, "big") + (9).to_bytes(8, "big"))
    assert record_aad(ALICE, 3, 9) != record_aad(BOB, 3, 9)
    with pytest.raises(ValueError, match="32 bytes"):
        record_aad(b"short", 1, 1)
    salt = bytes(range(32))
    payload = pack_payload(PROFILE_A, salt)
    assert payload[0] == 1
    assert unpack_payload(payload) == (PROFILE_A, salt)
    with pytest.raises(TamperedRecordError):
        unpack_payload(b"\x02" + payload[1:])


def test_hex32_helpers() -> None:
    assert to_hex32(ALICE) == "0x" + "01" * 32
    assert from_hex32(to_hex32(ALICE)) == ALICE
    assert from_hex32("01" * 32) == ALICE
    with pytest.raises(ValueError, match="64 hex"):
        from_hex32("0x1234")
