"""EIP-712 digests of flat structs and ECDSA signer recovery, fast enough for a relayer's batches.

`eth_account.messages.encode_typed_data` plus `Account.recover_message` take about half a
millisecond per signature (the typed data is parsed and validated as JSON every time); a relayer
checking a few hundred signed changes per request spends most of its time there. Here the type
hash and the domain separator are computed once, a struct of static fields (bytes32, uintN, bool,
address) is encoded as its 32-byte words, and the signer is recovered with coincurve directly,
refusing what OpenZeppelin's `ECDSA.tryRecover` refuses: a length other than 65 bytes, `v` other
than 27 or 28, `r` or `s` zero or out of range, and a malleable (high) `s`.

The typed data the contracts define (`ConsentChange` of the ConsentLedger; `LinkWallet`,
`RotateWallet` and `CancelWalletRecovery` of the CustomerRegistry) is described here once: each
struct as the contract writes it into its type hash, its fields (for the digests), and the
`eth_signTypedData_v4` JSON a wallet is asked to sign (`consent_change_typed_data`,
`link_wallet_typed_data`, `rotate_wallet_typed_data`, `cancel_wallet_recovery_typed_data`), for
the gateway's API and for the benchmarks' wallets alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from coincurve import PublicKey
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

Fields = Sequence[tuple[str, str]]

_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N: Final = _N // 2

#: The struct types as the contracts spell them in their `..._TYPEHASH` (EIP-712 `encodeType`).
DOMAIN_TYPE: Final = (
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
#: The ConsentLedger's (domain "ConsentLedger", version "1").
CONSENT_CHANGE_TYPE: Final = (
    "ConsentChange(bytes32 customerId,bytes32 purposeId,uint64 purposeVersion,uint64 orgId,"
    "bool granted,uint64 expiresAt,uint256 nonce,uint256 deadline)"
)
#: The CustomerRegistry's (domain "CustomerRegistry", version "1"): the new wallet accepts.
LINK_WALLET_TYPE: Final = (
    "LinkWallet(bytes32 customerId,address wallet,uint256 nonce,uint256 deadline)"
)
#: The current wallet hands over to `newWallet`.
ROTATE_WALLET_TYPE: Final = (
    "RotateWallet(bytes32 customerId,address currentWallet,address newWallet,uint256 nonce,"
    "uint256 deadline)"
)
#: The current wallet cancels a pending recovery.
CANCEL_WALLET_RECOVERY_TYPE: Final = (
    "CancelWalletRecovery(bytes32 customerId,address currentWallet,address recoveryWallet,"
    "uint256 nonce,uint256 deadline)"
)


def struct_fields(encode_type: str) -> tuple[tuple[str, str], ...]:
    """The (name, type) of each field of a struct of no struct members, from its `encodeType`:
    `struct_fields("Mail(address to,string body)") == (("to", "address"), ("body", "string"))`."""
    members = encode_type[encode_type.index("(") + 1 : -1].split(",")
    return tuple((field, kind) for kind, field in (member.split(" ") for member in members))


def type_signature(name: str, fields: Fields) -> str:
    """`encodeType` of a struct of no struct members: `Name(type1 field1,type2 field2,...)`."""
    return f"{name}({','.join(f'{kind} {field}' for field, kind in fields)})"


DOMAIN_FIELDS: Final = struct_fields(DOMAIN_TYPE)
CONSENT_CHANGE_FIELDS: Final = struct_fields(CONSENT_CHANGE_TYPE)
LINK_WALLET_FIELDS: Final = struct_fields(LINK_WALLET_TYPE)
ROTATE_WALLET_FIELDS: Final = struct_fields(ROTATE_WALLET_TYPE)
CANCEL_WALLET_RECOVERY_FIELDS: Final = struct_fields(CANCEL_WALLET_RECOVERY_TYPE)


def domain_separator(name: str, version: str, chain_id: int, verifying_contract: str) -> bytes:
    """`hashStruct(EIP712Domain)` for the usual four fields."""
    return keccak(
        keccak(text=DOMAIN_TYPE)
        + keccak(text=name)
        + keccak(text=version)
        + chain_id.to_bytes(32, "big")
        + bytes(12)
        + bytes.fromhex(verifying_contract[2:])
    )


class StructHasher:
    """The EIP-712 digest of one struct type of static fields, in one domain."""

    def __init__(self, name: str, fields: Fields, domain: bytes) -> None:
        for field_name, kind in fields:
            if not _is_static(kind):
                raise ValueError(f"{field_name}: only static field types are supported ({kind})")
        self.fields = tuple(fields)
        self.type_hash = keccak(text=type_signature(name, fields))
        self.domain = domain

    def digest(self, message: Mapping[str, Any]) -> bytes:
        """`keccak256("\\x19\\x01" ‖ domainSeparator ‖ hashStruct(message))`."""
        words = b"".join(_word(kind, message[name]) for name, kind in self.fields)
        return keccak(b"\x19\x01" + self.domain + keccak(self.type_hash + words))


def typed_data(
    primary_type: str,
    fields: Fields,
    message: Mapping[str, Any],
    *,
    name: str,
    chain_id: int,
    verifying_contract: str,
    version: str = "1",
) -> dict[str, Any]:
    """The `eth_signTypedData_v4` JSON of one struct of `fields` in the usual four-field domain
    (what a wallet shows and signs, and what `eth_account.messages.encode_typed_data` takes)."""
    return {
        "types": {
            "EIP712Domain": _json_fields(DOMAIN_FIELDS),
            primary_type: _json_fields(fields),
        },
        "primaryType": primary_type,
        "domain": {
            "name": name,
            "version": version,
            "chainId": chain_id,
            "verifyingContract": verifying_contract,
        },
        "message": dict(message),
    }


def consent_change_typed_data(
    chain_id: int, ledger_address: str, message: Mapping[str, Any]
) -> dict[str, Any]:
    """The typed data of a ConsentLedger `ConsentChange`; `message` has the struct's fields
    (`CONSENT_CHANGE_FIELDS`: customerId, purposeId, purposeVersion, orgId, granted, expiresAt,
    nonce, deadline)."""
    return typed_data(
        "ConsentChange",
        CONSENT_CHANGE_FIELDS,
        message,
        name="ConsentLedger",
        chain_id=chain_id,
        verifying_contract=ledger_address,
    )


def link_wallet_typed_data(
    chain_id: int,
    registry_address: str,
    customer_id: str,
    wallet: str,
    nonce: int,
    deadline: int,
) -> dict[str, Any]:
    """The typed data of a CustomerRegistry `LinkWallet`: `wallet` (checksummed here) agrees to
    be linked to `customer_id` (0x + 64 hex digits) at the customer's wallet nonce."""
    message = {
        "customerId": customer_id,
        "wallet": to_checksum_address(wallet),
        "nonce": nonce,
        "deadline": deadline,
    }
    return typed_data(
        "LinkWallet",
        LINK_WALLET_FIELDS,
        message,
        name="CustomerRegistry",
        chain_id=chain_id,
        verifying_contract=registry_address,
    )


def rotate_wallet_typed_data(
    chain_id: int,
    registry_address: str,
    customer_id: str,
    current_wallet: str,
    new_wallet: str,
    nonce: int,
    deadline: int,
) -> dict[str, Any]:
    """The typed data of a CustomerRegistry `RotateWallet`: the customer's current wallet agrees
    to be replaced by `new_wallet` (which signs `link_wallet_typed_data` for the same nonce)."""
    message = {
        "customerId": customer_id,
        "currentWallet": to_checksum_address(current_wallet),
        "newWallet": to_checksum_address(new_wallet),
        "nonce": nonce,
        "deadline": deadline,
    }
    return typed_data(
        "RotateWallet",
        ROTATE_WALLET_FIELDS,
        message,
        name="CustomerRegistry",
        chain_id=chain_id,
        verifying_contract=registry_address,
    )


def cancel_wallet_recovery_typed_data(
    chain_id: int,
    registry_address: str,
    customer_id: str,
    current_wallet: str,
    recovery_wallet: str,
    nonce: int,
    deadline: int,
) -> dict[str, Any]:
    """The typed data of a CustomerRegistry `CancelWalletRecovery`: the current wallet stops the
    pending recovery to `recovery_wallet`."""
    message = {
        "customerId": customer_id,
        "currentWallet": to_checksum_address(current_wallet),
        "recoveryWallet": to_checksum_address(recovery_wallet),
        "nonce": nonce,
        "deadline": deadline,
    }
    return typed_data(
        "CancelWalletRecovery",
        CANCEL_WALLET_RECOVERY_FIELDS,
        message,
        name="CustomerRegistry",
        chain_id=chain_id,
        verifying_contract=registry_address,
    )


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


def _json_fields(fields: Fields) -> list[dict[str, str]]:
    return [{"name": name, "type": kind} for name, kind in fields]


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
