"""The CustomerRegistry test world, shared by the registry and the wallet tests.

The default Consortium; organisation 1 ("founder", admin accounts[1]) with DATA_STEWARD
accounts[2]; organisation 2 ("partner", admin accounts[3]) with DATA_STEWARD accounts[4]; an AGENT
of organisation 1, accounts[6]; and a CustomerRegistry bound to that Consortium with a recovery
delay of `RECOVERY_DELAY`. Wallets are fresh eth-account keys that only sign EIP-712 typed data,
exactly as `eth_signTypedData_v4` would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract

from tests.contracts.typed_data import (
    CANCEL_WALLET_RECOVERY,
    ROTATE_WALLET,
    cid,
    labelled_key,
    link_wallet_typed_data,
    registry_typed_data,
    sign,
)

RECOVERY_DELAY = 172_800

ZERO32 = bytes(32)
NONE, ACTIVE, ERASED = range(3)
ALREADY_HELD, SKIPPED_ERASED, INVALID = range(3)
FAR_FUTURE = 2**64
BATCH_GAS = 15_000_000


def commit(label: str | int, version: int = 1) -> bytes:
    """A commitment to a record version (any non-zero 32 bytes)."""
    return keccak(text=f"commitment:{label}:{version}")


def wallet_key(label: str) -> Any:
    return labelled_key("wallet key", label)


@dataclass
class World:
    chain: Any
    consortium: Contract
    registry: Contract
    deploy_receipt: Any
    accounts: list[str]
    roles: dict[str, bytes]
    admins: dict[int, str]
    add_organization: Any

    @property
    def admin1(self) -> str:
        return self.accounts[1]

    @property
    def steward1(self) -> str:
        return self.accounts[2]

    @property
    def admin2(self) -> str:
        return self.accounts[3]

    @property
    def steward2(self) -> str:
        return self.accounts[4]

    @property
    def outsider(self) -> str:
        return self.accounts[5]

    @property
    def agent1(self) -> str:
        return self.accounts[6]

    def add_org(self, name: str, admin: str) -> int:
        return int(self.add_organization(self.chain, self.consortium, self.admins, name, admin))

    @property
    def fns(self) -> Any:
        return self.registry.functions

    @property
    def abi(self) -> list[dict[str, Any]]:
        return list(self.registry.abi)

    def reverts(self, name: str, *args: Any) -> Any:
        return self.chain.reverts(name, *args, abi=self.abi)

    def send(self, call: Any, sender: str, gas: int = 2_000_000) -> Any:
        return self.chain.transact(call, sender, gas=gas)

    def events(self, name: str, receipt: Any) -> list[dict[str, Any]]:
        return self.chain.events(self.registry, name, receipt)

    def event_names(self, receipt: Any) -> list[str]:
        return self.chain.event_names(self.registry, receipt)

    def register(self, label: str | int, sender: str | None = None) -> Any:
        return self.send(self.fns.register(cid(label), commit(label)), sender or self.steward1)

    def timestamp(self, receipt: Any) -> int:
        return int(self.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])

    def typed_data(
        self,
        customer_id: bytes,
        wallet: str,
        nonce: int,
        deadline: int,
        verifying_contract: str | None = None,
    ) -> dict[str, Any]:
        """The `eth_signTypedData_v4` JSON a wallet is asked to sign."""
        return link_wallet_typed_data(
            self.chain.w3.eth.chain_id,
            verifying_contract or self.registry.address,
            customer_id,
            wallet,
            nonce,
            deadline,
        )

    def sign_link(
        self,
        customer_id: bytes,
        key: Any,
        *,
        wallet: str | None = None,
        nonce: int | None = None,
        deadline: int = FAR_FUTURE,
        verifying_contract: str | None = None,
    ) -> bytes:
        """`key` signs LinkWallet for `wallet` (its own address by default) at the current nonce."""
        if nonce is None:
            nonce = self.fns.walletNonce(customer_id).call()
        data = self.typed_data(
            customer_id, wallet or key.address, nonce, deadline, verifying_contract
        )
        return sign(key, data)

    def link(self, customer_id: bytes, key: Any, sender: str | None = None) -> Any:
        signature = self.sign_link(customer_id, key)
        call = self.fns.linkWallet(customer_id, key.address, FAR_FUTURE, signature)
        return self.send(call, sender or self.steward1)

    def sign_rotate(
        self,
        customer_id: bytes,
        current: Any,
        new_wallet: str,
        *,
        nonce: int | None = None,
        deadline: int = FAR_FUTURE,
        current_wallet: str | None = None,
    ) -> bytes:
        """`current` signs RotateWallet (to `new_wallet`) at the current nonce."""
        if nonce is None:
            nonce = self.fns.walletNonce(customer_id).call()
        message = {
            "customerId": Web3.to_hex(customer_id),
            "currentWallet": current_wallet or current.address,
            "newWallet": new_wallet,
            "nonce": nonce,
            "deadline": deadline,
        }
        chain_id = self.chain.w3.eth.chain_id
        return sign(
            current, registry_typed_data(ROTATE_WALLET, chain_id, self.registry.address, message)
        )

    def sign_cancel(
        self,
        customer_id: bytes,
        current: Any,
        *,
        nonce: int | None = None,
        deadline: int = FAR_FUTURE,
    ) -> bytes:
        """`current` signs CancelWalletRecovery of the pending recovery at the current nonce."""
        if nonce is None:
            nonce = self.fns.walletNonce(customer_id).call()
        message = {
            "customerId": Web3.to_hex(customer_id),
            "currentWallet": current.address,
            "recoveryWallet": self.fns.walletRecovery(customer_id).call()[0],
            "nonce": nonce,
            "deadline": deadline,
        }
        chain_id = self.chain.w3.eth.chain_id
        return sign(
            current,
            registry_typed_data(CANCEL_WALLET_RECOVERY, chain_id, self.registry.address, message),
        )

    def rotate(self, customer_id: bytes, current: Any, new: Any, sender: str | None = None) -> Any:
        """Rotate from `current` to `new`, both signing, sent by `sender` (anyone; an outsider
        by default)."""
        call = self.fns.rotateWallet(
            customer_id,
            new.address,
            FAR_FUTURE,
            self.sign_rotate(customer_id, current, new.address),
            self.sign_link(customer_id, new),
        )
        return self.send(call, sender or self.outsider)


def build_world(module_chain: Any, add_organization: Any, customer_registry_artifact: Any) -> World:
    """The world, built once per chain (a module's `base_world`)."""
    chain = module_chain
    accounts = chain.accounts
    consortium, _ = chain.deploy()
    fns = consortium.functions
    roles = {name: bytes(fns[name]().call()) for name in ["ORG_ADMIN", "DATA_STEWARD", "AGENT"]}
    admins = {1: accounts[1]}
    chain.grant(fns, roles["DATA_STEWARD"], accounts[2], accounts[1])
    assert add_organization(chain, consortium, admins, "partner", accounts[3]) == 2
    chain.grant(fns, roles["DATA_STEWARD"], accounts[4], accounts[3])
    chain.grant(fns, roles["AGENT"], accounts[6], accounts[1])
    registry, receipt = chain.deploy_artifact(
        customer_registry_artifact, consortium.address, RECOVERY_DELAY
    )
    return World(
        chain=chain,
        consortium=consortium,
        registry=registry,
        deploy_receipt=receipt,
        accounts=accounts,
        roles=roles,
        admins=admins,
        add_organization=add_organization,
    )
