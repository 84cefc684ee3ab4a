"""EIP-712 typed data as the contracts define it, signed the way a customer's wallet signs it.

Shared by the contract tests (and `gas_compare`): the struct types of the CustomerRegistry
(`LinkWallet`), the ConsentLedger (`ConsentChange`) and EIP-2612 (`Permit`), written as each
contract writes them into its type hash, the `eth_signTypedData_v4` JSON a wallet is asked to sign,
and the labelled ids and keys the tests make their customers and wallets from.

This is on purpose a copy of its own, independent of the gateway's `crm_gateway.chain.eip712`:
these tests check the contracts against the standard, so a mistake in the gateway's typed data
must not make them agree with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

# Each struct as the contract spells it in its `..._TYPEHASH` (EIP-712 `encodeType`).
EIP712_DOMAIN = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
LINK_WALLET = "LinkWallet(bytes32 customerId,address wallet,uint256 nonce,uint256 deadline)"
ROTATE_WALLET = (
    "RotateWallet(bytes32 customerId,address currentWallet,address newWallet,uint256 nonce,"
    "uint256 deadline)"
)
CANCEL_WALLET_RECOVERY = (
    "CancelWalletRecovery(bytes32 customerId,address currentWallet,address recoveryWallet,"
    "uint256 nonce,uint256 deadline)"
)
CONSENT_CHANGE = (
    "ConsentChange(bytes32 customerId,bytes32 purposeId,uint64 purposeVersion,uint64 orgId,"
    "bool granted,uint64 expiresAt,uint256 nonce,uint256 deadline)"
)
PERMIT = "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"


def members(encode_type: str) -> list[dict[str, str]]:
    """A struct's entry in the `types` of `eth_signTypedData_v4` JSON, from its `encodeType`:
    `[{"name": "customerId", "type": "bytes32"}, ...]`."""
    inside = encode_type[encode_type.index("(") + 1 : -1]
    pairs = (member.split(" ") for member in inside.split(","))
    return [{"name": name, "type": kind} for kind, name in pairs]


EIP712_DOMAIN_TYPE = members(EIP712_DOMAIN)


def labelled_id(namespace: str, label: str | int) -> bytes:
    """`keccak256("<namespace>:<label>")`: any non-zero 32 bytes, the same for the same label.
    Each test module keeps its own namespace, so its ids are what they always were."""
    return keccak(text=f"{namespace}:{label}")


def labelled_key(namespace: str, label: str | int) -> LocalAccount:
    """A fresh wallet key derived from the label (the private key is `labelled_id`)."""
    account: LocalAccount = Account.from_key(labelled_id(namespace, label))
    return account


def cid(label: str | int) -> bytes:
    """A customer id as the gateway would make one (here: any non-zero 32 bytes)."""
    return labelled_id("customer", label)


def domain(name: str, chain_id: int, verifying_contract: str, version: str = "1") -> dict[str, Any]:
    """A contract's `EIP712Domain` (OpenZeppelin's EIP712: these four fields)."""
    return {
        "name": name,
        "version": version,
        "chainId": chain_id,
        "verifyingContract": verifying_contract,
    }


def typed_data(
    encode_type: str, message: Mapping[str, Any], signing_domain: Mapping[str, Any]
) -> dict[str, Any]:
    """The `eth_signTypedData_v4` JSON of the struct `encode_type` in `signing_domain`."""
    primary_type = encode_type[: encode_type.index("(")]
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, primary_type: members(encode_type)},
        "primaryType": primary_type,
        "domain": dict(signing_domain),
        "message": dict(message),
    }


def link_wallet_typed_data(
    chain_id: int, registry: str, customer_id: bytes, wallet: str, nonce: int, deadline: int
) -> dict[str, Any]:
    """The CustomerRegistry's `LinkWallet` a wallet signs to be linked to `customer_id`."""
    message = {
        "customerId": Web3.to_hex(customer_id),
        "wallet": wallet,
        "nonce": nonce,
        "deadline": deadline,
    }
    return typed_data(LINK_WALLET, message, domain("CustomerRegistry", chain_id, registry))


def registry_typed_data(
    encode_type: str, chain_id: int, registry: str, message: Mapping[str, Any]
) -> dict[str, Any]:
    """A CustomerRegistry struct (`ROTATE_WALLET`, `CANCEL_WALLET_RECOVERY`, ...) to sign."""
    return typed_data(encode_type, message, domain("CustomerRegistry", chain_id, registry))


def sign(key: Any, typed: Mapping[str, Any]) -> bytes:
    """`key`'s 65-byte signature of `typed`, exactly as `eth_signTypedData_v4` makes it."""
    return bytes(Account.sign_typed_data(key.key, full_message=dict(typed)).signature)


def sign_link(
    key: Any,
    chain_id: int,
    registry: str,
    customer_id: bytes,
    nonce: int,
    deadline: int,
    wallet: str | None = None,
) -> bytes:
    """`key` signs LinkWallet for `wallet` (its own address by default)."""
    typed = link_wallet_typed_data(
        chain_id, registry, customer_id, wallet or key.address, nonce, deadline
    )
    return sign(key, typed)
