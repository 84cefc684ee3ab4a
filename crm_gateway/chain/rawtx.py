"""Read a signed raw transaction without sending it: who signed it, where it goes, what it calls."""

from __future__ import annotations

from dataclasses import dataclass

import rlp
from eth_account import Account
from eth_account._utils.legacy_transactions import Transaction as LegacyTransaction
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes


class MalformedTransactionError(ValueError):
    """The bytes are not a signed Ethereum transaction."""


@dataclass(frozen=True)
class RawTransaction:
    sender: str
    to: str | None
    data: bytes
    nonce: int
    chain_id: int | None
    tx_hash: str


def decode_raw_transaction(raw: bytes) -> RawTransaction:
    """Decode a legacy or typed (EIP-2718) signed transaction and recover its sender."""
    if not raw:
        raise MalformedTransactionError("the transaction is empty")
    chain_id: int | None
    try:
        sender = Account.recover_transaction(raw)
        if raw[0] <= 0x7F:
            fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
            to, data = fields.get("to") or b"", bytes(fields.get("data") or b"")
            nonce, chain_id = int(fields["nonce"]), int(fields["chainId"])
        else:
            legacy = rlp.decode(raw, LegacyTransaction)
            to, data, nonce = legacy.to, bytes(legacy.data), int(legacy.nonce)
            # EIP-155: v = chain_id * 2 + 35 or 36; older transactions name no chain.
            chain_id = (legacy.v - 35) // 2 if legacy.v >= 35 else None
    except Exception as exc:  # rlp, signature and field errors all mean the same to a caller
        raise MalformedTransactionError(f"not a signed transaction: {exc}") from exc
    return RawTransaction(
        sender=to_checksum_address(sender),
        to=to_checksum_address(to) if to else None,
        data=data,
        nonce=nonce,
        chain_id=chain_id,
        tx_hash="0x" + keccak(raw).hex(),
    )
