"""Blind indexes and customer ids: keyed HMAC-SHA256 of normalised e-mail and phone.

A blind index lets the gateway find a duplicate without storing the e-mail or phone in clear: the
store keeps `HMAC(k, value)`, and a lookup computes the same HMAC. Without the index key an
attacker with the database cannot test guesses (unlike a plain hash of an e-mail address, which a
dictionary reverses in seconds).

Three sub-keys are derived from the one index key with HKDF-SHA256, one per purpose (e-mail index,
phone index, customer id), plus one for a public fingerprint, so a value of one kind never equals
a value of another even for the same input, and no output can be replayed as another.

The index key is shared by the whole consortium (the customer id must come out the same in every
organisation): `INDEX_KEY` in the settings, or, when unset, the key in the local keyring file
(generated on first use; see `KeyringFileProvider.index_key` for the warning that goes with it).
`BlindIndexer.fingerprint()` is safe to publish, e.g. on-chain, so gateways can check they use
the same key before registering anyone.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crm_gateway.config import Settings
from crm_gateway.vault.keys import KEY_BYTES, KeyringFileProvider

_LABEL: Final = b"crm-chaincode/blind-index/v1/"
_SALT: Final = b"crm-chaincode blind index key derivation"
_E164: Final = re.compile(r"\+[1-9][0-9]{1,14}", re.ASCII)
GENERATION_MAX: Final = 2**32 - 1


def _derive(index_key: bytes, purpose: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=_SALT, info=_LABEL + purpose
    ).derive(index_key)


class BlindIndexer:
    """Domain-separated HMACs over normalised identifiers (inputs are checked, not re-normalised).

    Normalise with `customers.profile` first (`email_index_form`, the E.164 phone): the indexer
    refuses anything that is not already in normal form rather than guess.
    """

    def __init__(self, index_key: bytes) -> None:
        if len(index_key) != KEY_BYTES:
            raise ValueError(f"the index key must be {KEY_BYTES} bytes")
        self._email = _derive(index_key, b"email")
        self._phone = _derive(index_key, b"phone")
        self._id = _derive(index_key, b"customer-id")
        self._fingerprint = _derive(index_key, b"fingerprint")
        self._request = _derive(index_key, b"request")

    def email(self, normalised: str) -> str:
        """Hex HMAC of a normalised e-mail (trimmed, lower case: `email_index_form`)."""
        _check_email(normalised)
        return hmac.new(self._email, normalised.encode("utf-8"), hashlib.sha256).hexdigest()

    def phone(self, e164: str) -> str:
        """Hex HMAC of a phone number in E.164 (`+` and up to 15 digits)."""
        if _E164.fullmatch(e164) is None:
            raise ValueError("phone must be in E.164 form (+ and up to 15 digits)")
        return hmac.new(self._phone, e164.encode("ascii"), hashlib.sha256).hexdigest()

    def customer_id(self, normalised_email: str, generation: int = 0) -> bytes:
        """The 32-byte customer id for an e-mail; `generation` > 0 after an erasure.

        After an erasure the old id stays on-chain as erased; the gateway registers the person
        again under the first generation whose id the chain does not mark as erased.
        """
        _check_email(normalised_email)
        if not 0 <= generation <= GENERATION_MAX:
            raise ValueError(f"generation must be between 0 and {GENERATION_MAX}")
        message = generation.to_bytes(4, "big") + normalised_email.encode("utf-8")
        return hmac.new(self._id, message, hashlib.sha256).digest()

    def request_digest(self, payload: bytes) -> str:
        """A keyed digest of a request carrying personal data, for idempotency checks.

        A plain hash of a low-entropy profile could be reversed by guessing; this one cannot
        without the index key.
        """
        return hmac.new(self._request, payload, hashlib.sha256).hexdigest()

    def fingerprint(self) -> str:
        """A public, non-secret hex fingerprint of the index key (compare it across gateways)."""
        return hmac.new(self._fingerprint, b"fingerprint", hashlib.sha256).hexdigest()


def _check_email(value: str) -> None:
    if not value or "@" not in value or value != value.strip() or value != value.lower():
        raise ValueError("e-mail must be normalised (trimmed, lower case) before indexing")


def load_index_key(settings: Settings, keyring: KeyringFileProvider | None = None) -> bytes:
    """The consortium's index key: `INDEX_KEY` if set, else the keyring file's (made if absent)."""
    if settings.index_key is not None:
        return bytes.fromhex(settings.index_key.get_secret_value())
    provider = keyring or KeyringFileProvider(settings.path(settings.vault_keyring_file))
    return provider.index_key()
