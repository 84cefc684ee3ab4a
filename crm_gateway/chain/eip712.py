"""EIP-712 digests of flat structs and ECDSA signer recovery, fast enough for a relayer's batches.

`eth_account.messages.encode_typed_data` plus `Account.recover_message` take about half a
millisecond per signature (the typed data is parsed and validated as JSON every time); a relayer
checking a few hundred signed changes per request spends most of its time there. Here the type
hash and the domain separator are computed once, a struct of static fields (bytes32, uintN, bool,
address) is encoded as its 32-byte words, and the signer is recovered with coincurve directly,
refusing what OpenZeppelin's `ECDSA.tryRecover` refuses: a length other than 65 bytes, `v` other
than 27 or 28, `r` or `s` zero or out of range, and a malleable (high) `s`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from coincurve import PublicKey
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N: Final = _N // 2
_DOMAIN_TYPE: Final = (
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)


def domain_separator(name: str, version: str, chain_id: int, verifying_contract: str) -> bytes:
    """`hashStruct(EIP712Domain)` for the usual four fields."""
    return keccak(
        keccak(text=_DOMAIN_TYPE)
        + keccak(text=name)
        + keccak(text=version)
        + chain_id.to_bytes(32, "big")
        + bytes(12)
        + bytes.fromhex(verifying_contract[2:])
    )


class StructHasher:
    """The EIP-712 digest of one struct type of static fields, in one domain."""

    def __init__(self, name: str, fields: Sequence[tuple[str, str]], domain: bytes) -> None:
        for field_name, kind in fields:
            if not _is_static(kind):
                raise ValueError(f"{field_name}: only static field types are supported ({kind})")
        self.fields = tuple(fields)
        signature = f"{name}({','.join(f'{kind} {n}' for n, kind in fields)})"
        self.type_hash = keccak(text=signature)
        self.domain = domain

    def digest(self, message: Mapping[str, Any]) -> bytes:
        """`keccak256("\\x19\\x01" ‖ domainSeparator ‖ hashStruct(message))`."""
        words = b"".join(_word(kind, message[name]) for name, kind in self.fields)
        return keccak(b"\x19\x01" + self.domain + keccak(self.type_hash + words))


def recover_signer(digest: bytes, signature: str | bytes) -> str | None:
    """The checksum address that signed `digest`, or None for a signature the contract's
    `ECDSA.tryRecover` would refuse (malformed, malleable, or recovering no key)."""
    raw = bytes.fromhex(signature[2:]) if isinstance(signature, str) else signature
    if len(raw) != 65:
        return None
    r = int.from_bytes(raw[:32], "big")
    s = int.from_bytes(raw[32:64], "big")
    v = raw[64]
    if v not in (27, 28) or not 0 < r < _N or not 0 < s <= _HALF_N:
        return None
    try:
        key = PublicKey.from_signature_and_message(raw[:64] + bytes([v - 27]), digest, hasher=None)
    except ValueError:
        return None
    return str(to_checksum_address(keccak(key.format(compressed=False)[1:])[-20:]))


def _is_static(kind: str) -> bool:
    if kind in {"bytes32", "bool", "address"}:
        return True
    if kind.startswith("uint"):
        bits = kind[4:] or "256"
        return bits.isdigit() and 8 <= int(bits) <= 256 and int(bits) % 8 == 0
    return False


def _word(kind: str, value: Any) -> bytes:
    if kind == "bytes32":
        raw = bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
        if len(raw) != 32:
            raise ValueError("a bytes32 field must be 32 bytes")
        return raw
    if kind == "bool":
        return (1 if value else 0).to_bytes(32, "big")
    if kind == "address":
        raw = bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
        if len(raw) != 20:
            raise ValueError("an address field must be 20 bytes")
        return bytes(12) + raw
    number = int(value)
    bits = int(kind[4:] or "256")
    if not 0 <= number < 2**bits:
        raise ValueError(f"{number} does not fit {kind}")
    return number.to_bytes(32, "big")
