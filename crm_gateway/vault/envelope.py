"""Envelope encryption of one record: AES-256-GCM with its own data key, wrapped by a KEK.

`seal` draws a fresh random 256-bit data key and a random 96-bit nonce for every call (so a key
and nonce pair is never reused), encrypts with the caller's associated data (AAD), and keeps the
data key only wrapped by the provider's current KEK. `open_sealed` unwraps and decrypts; any
change to the ciphertext, the nonce, the wrapped key, its KEK id or the AAD raises
`TamperedRecordError`: GCM authenticates all of them, so decryption never yields garbage.

The AAD must name what the record *is*, so that a ciphertext copied into another row fails:
`vault.records.record_aad(customer_id, version, org_id)` is the one the store uses.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crm_gateway.vault.keys import (
    KEY_BYTES,
    NONCE_BYTES,
    KeyProvider,
    TamperedKeyError,
    WrappedKey,
)

TAG_BYTES: Final = 16


class TamperedRecordError(Exception):
    """A sealed record failed authentication: altered, swapped, or opened with the wrong AAD."""


@dataclass(frozen=True)
class SealedRecord:
    """What is stored for a record: ciphertext (with its 16-byte tag), nonce, wrapped data key."""

    ciphertext: bytes
    nonce: bytes
    wrapped_key: WrappedKey


def seal(plaintext: bytes, aad: bytes, provider: KeyProvider) -> SealedRecord:
    """Encrypt `plaintext` under a new data key bound to `aad`; the data key leaves only wrapped."""
    data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, aad)
    return SealedRecord(ciphertext=ciphertext, nonce=nonce, wrapped_key=provider.wrap(data_key))


def open_sealed(record: SealedRecord, aad: bytes, provider: KeyProvider) -> bytes:
    """The plaintext of `record`, or `TamperedRecordError` if anything about it was changed.

    `vault.keys.UnknownKekError` (a `KeyProviderError`) is left to propagate: a KEK that is gone
    is an operational problem (a retired or missing keyring), not evidence of tampering.
    """
    if len(record.nonce) != NONCE_BYTES:
        raise TamperedRecordError("nonce has the wrong length")
    if len(record.ciphertext) < TAG_BYTES:
        raise TamperedRecordError("ciphertext is shorter than its tag")
    try:
        data_key = provider.unwrap(record.wrapped_key)
    except TamperedKeyError as exc:
        raise TamperedRecordError(f"wrapped data key: {exc}") from None
    if len(data_key) != KEY_BYTES:
        raise TamperedRecordError("unwrapped data key has the wrong length")
    try:
        return AESGCM(data_key).decrypt(record.nonce, record.ciphertext, aad)
    except InvalidTag:
        raise TamperedRecordError(
            "record failed authentication (altered, swapped or wrong AAD)"
        ) from None
