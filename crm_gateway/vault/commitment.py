"""Canonical JSON of a record and its salted keccak256 commitment (what goes on-chain).

Canonical form: JSON with object keys sorted (by code point), no whitespace, UTF-8 (no `\\u`
escapes except for control characters), every string and key NFC-normalised, integers as
integers, floats in Python's shortest round-trip form, booleans and null as literals; NaN and
infinities are refused. The same record therefore always gives the same bytes, whatever order its
fields arrived in.

`commit(canonical, salt) = keccak256(salt || canonical)`, i.e. Solidity's
`keccak256(abi.encodePacked(salt, canonical))`. The 32-byte random salt (kept only inside the
sealed record) makes the commitment hiding: without it nobody can test a guessed profile
against the on-chain value, and after erasure the commitment is unlinkable.
"""

from __future__ import annotations

import json
import math
import secrets
import unicodedata
from typing import Any, Final

from eth_utils.crypto import keccak

SALT_BYTES: Final = 32


def _nfc(value: Any) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("canonical JSON has no NaN or infinity")
        return value
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"canonical JSON keys must be strings, not {type(key).__name__}")
            normalised = unicodedata.normalize("NFC", key)
            if normalised in result:
                raise ValueError(f"two keys normalise to {normalised!r}")
            result[normalised] = _nfc(item)
        return result
    if isinstance(value, list | tuple):
        return [_nfc(item) for item in value]
    raise TypeError(f"{type(value).__name__} has no canonical JSON form")


def canonical_json(value: Any) -> bytes:
    """The canonical UTF-8 JSON bytes of `value` (dicts, lists, str, int, float, bool, None)."""
    return json.dumps(
        _nfc(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def new_salt() -> bytes:
    """32 random bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(SALT_BYTES)


def commit(canonical: bytes, salt: bytes) -> bytes:
    """keccak256(salt || canonical), 32 bytes."""
    if len(salt) != SALT_BYTES:
        raise ValueError(f"the salt must be {SALT_BYTES} bytes")
    return bytes(keccak(salt + canonical))
