"""Envelope encryption: round trips, and every kind of tampering fails loudly."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_gateway.vault.envelope import SealedRecord, TamperedRecordError, open_sealed, seal
from crm_gateway.vault.keys import KeyringFileProvider, UnknownKekError, WrappedKey

AAD = b"customer-1|v1"


@settings(max_examples=60, deadline=None)
@given(plaintext=st.binary(max_size=4096), aad=st.binary(max_size=128))
def test_round_trip(shared_provider: KeyringFileProvider, plaintext: bytes, aad: bytes) -> None:
    record = seal(plaintext, aad, shared_provider)
    assert len(record.nonce) == 12
    assert len(record.ciphertext) == len(plaintext) + 16
    assert open_sealed(record, aad, shared_provider) == plaintext


def test_every_seal_uses_a_fresh_key_and_nonce(shared_provider: KeyringFileProvider) -> None:
    records = [seal(b"same plaintext", AAD, shared_provider) for _ in range(20)]
    assert len({r.nonce for r in records}) == 20
    assert len({r.ciphertext for r in records}) == 20
    data_keys = {shared_provider.unwrap(r.wrapped_key) for r in records}
    assert len(data_keys) == 20


def _flip(data: bytes, position: int, mask: int) -> bytes:
    out = bytearray(data)
    out[position % len(out)] ^= mask
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(
    plaintext=st.binary(min_size=0, max_size=256),
    position=st.integers(min_value=0),
    mask=st.integers(min_value=1, max_value=255),
    part=st.sampled_from(["ciphertext", "nonce", "wrapped", "aad"]),
)
def test_any_flipped_bit_is_detected(
    shared_provider: KeyringFileProvider, plaintext: bytes, position: int, mask: int, part: str
) -> None:
    record = seal(plaintext, AAD, shared_provider)
    aad = AAD
    if part == "ciphertext":
        record = dataclasses.replace(record, ciphertext=_flip(record.ciphertext, position, mask))
    elif part == "nonce":
        record = dataclasses.replace(record, nonce=_flip(record.nonce, position, mask))
    elif part == "wrapped":
        wrapped = WrappedKey(
            record.wrapped_key.kek_id, _flip(record.wrapped_key.wrapped, position, mask)
        )
        record = dataclasses.replace(record, wrapped_key=wrapped)
    else:
        aad = _flip(AAD, position, mask)
    with pytest.raises(TamperedRecordError):
        open_sealed(record, aad, shared_provider)


def test_truncation_and_extension_are_detected(provider: KeyringFileProvider) -> None:
    record = seal(b"hello", AAD, provider)
    for broken in (
        dataclasses.replace(record, ciphertext=record.ciphertext[:-1]),
        dataclasses.replace(record, ciphertext=record.ciphertext + b"\x00"),
        dataclasses.replace(record, ciphertext=b""),
        dataclasses.replace(record, nonce=record.nonce[:-1]),
        dataclasses.replace(record, nonce=record.nonce + b"\x00"),
    ):
        with pytest.raises(TamperedRecordError):
            open_sealed(broken, AAD, provider)
    with pytest.raises(TamperedRecordError):
        open_sealed(record, AAD + b"x", provider)
    with pytest.raises(TamperedRecordError):
        open_sealed(record, b"", provider)


def test_wrapped_key_swapped_between_records_is_detected(provider: KeyringFileProvider) -> None:
    first = seal(b"first", AAD, provider)
    second = seal(b"second", AAD, provider)
    mixed = SealedRecord(first.ciphertext, first.nonce, second.wrapped_key)
    with pytest.raises(TamperedRecordError):
        open_sealed(mixed, AAD, provider)


def test_wrapped_key_relabelled_to_another_kek_is_detected(provider: KeyringFileProvider) -> None:
    record = seal(b"hello", AAD, provider)
    other = provider.rotate()
    relabelled = dataclasses.replace(
        record, wrapped_key=WrappedKey(other, record.wrapped_key.wrapped)
    )
    with pytest.raises(TamperedRecordError):
        open_sealed(relabelled, AAD, provider)
    assert open_sealed(record, AAD, provider) == b"hello"  # old KEK still unwraps


def test_a_missing_kek_is_not_reported_as_tampering(provider: KeyringFileProvider) -> None:
    record = seal(b"hello", AAD, provider)
    unknown = dataclasses.replace(
        record, wrapped_key=WrappedKey("kek-gone", record.wrapped_key.wrapped)
    )
    with pytest.raises(UnknownKekError):
        open_sealed(unknown, AAD, provider)
