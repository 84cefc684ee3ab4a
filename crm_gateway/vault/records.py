"""A customer record as stored: the canonical profile and its salt, sealed together.

The sealed plaintext is `0x01 || salt (32 bytes) || canonical profile JSON`. The salt lives
*inside* the sealed payload rather than in a column of its own: one AEAD operation authenticates
both under the same AAD, and destroying the wrapped data key (erasure) destroys the salt with the
profile, leaving no separate key material to shred or to forget.

The AAD binds the ciphertext to what it is: `label || customer id (32) || version (8, big
endian) || org id (8, big endian)`. Moving a ciphertext to another customer's row, another
version or another organisation's record fails authentication. (Rolling a row back to an older
version *with* its old version number is caught by comparing with the on-chain commitment.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from crm_gateway.vault.commitment import SALT_BYTES, commit, new_salt
from crm_gateway.vault.envelope import SealedRecord, TamperedRecordError, open_sealed, seal
from crm_gateway.vault.keys import KeyProvider

PAYLOAD_FORMAT: Final = 1
_AAD_LABEL: Final = b"crm-chaincode/customer-record/v1\x00"
BYTES32: Final = 32


def to_hex32(value: bytes) -> str:
    """`0x` + 64 lower-case hex digits (how customer ids and commitments are stored)."""
    if len(value) != BYTES32:
        raise ValueError("expected 32 bytes")
    return "0x" + value.hex()


def from_hex32(value: str) -> bytes:
    """The 32 bytes of a `0x`-prefixed (or bare) 64-digit hex string; `ValueError` otherwise."""
    raw = value[2:] if value[:2] in {"0x", "0X"} else value
    if len(raw) != 2 * BYTES32:
        raise ValueError("expected 64 hex digits")
    return bytes.fromhex(raw)


def record_aad(customer_id: bytes, version: int, org_id: int) -> bytes:
    """The associated data binding a sealed profile to customer, version and organisation."""
    if len(customer_id) != BYTES32:
        raise ValueError("customer_id must be 32 bytes")
    if not 0 <= version < 2**63 or not 0 <= org_id < 2**63:
        raise ValueError("version and org_id must be non-negative 64-bit integers")
    return _AAD_LABEL + customer_id + version.to_bytes(8, "big") + org_id.to_bytes(8, "big")


def pack_payload(canonical: bytes, salt: bytes) -> bytes:
    if len(salt) != SALT_BYTES:
        raise ValueError(f"the salt must be {SALT_BYTES} bytes")
    return bytes([PAYLOAD_FORMAT]) + salt + canonical


def unpack_payload(payload: bytes) -> tuple[bytes, bytes]:
    """(canonical, salt) from a payload; `TamperedRecordError` if it is not one."""
    if len(payload) < 1 + SALT_BYTES or payload[0] != PAYLOAD_FORMAT:
        raise TamperedRecordError("sealed payload has an unknown format")
    return payload[1 + SALT_BYTES :], payload[1 : 1 + SALT_BYTES]


@dataclass(frozen=True)
class ProtectedProfile:
    """A sealed profile and the commitment to publish on-chain."""

    sealed: SealedRecord
    commitment: bytes


@dataclass(frozen=True)
class RevealedProfile:
    """An opened profile: its canonical JSON, its salt and the commitment they give."""

    canonical: bytes
    salt: bytes
    commitment: bytes


def protect(
    canonical: bytes,
    *,
    customer_id: bytes,
    version: int,
    org_id: int,
    provider: KeyProvider,
    salt: bytes | None = None,
) -> ProtectedProfile:
    """Seal a canonical profile with a fresh salt (every version gets a new one by default)."""
    salt = new_salt() if salt is None else salt
    sealed = seal(pack_payload(canonical, salt), record_aad(customer_id, version, org_id), provider)
    return ProtectedProfile(sealed=sealed, commitment=commit(canonical, salt))


def reveal(
    sealed: SealedRecord,
    *,
    customer_id: bytes,
    version: int,
    org_id: int,
    provider: KeyProvider,
) -> RevealedProfile:
    """Open a sealed profile and recompute its commitment (compare it with the chain's)."""
    payload = open_sealed(sealed, record_aad(customer_id, version, org_id), provider)
    canonical, salt = unpack_payload(payload)
    return RevealedProfile(canonical=canonical, salt=salt, commitment=commit(canonical, salt))
