"""The customer's wallet: first link, rotation, delayed recovery and its cancellation.

The rules are the CustomerRegistry's ({CustomerWallets}), stated once there: the wallet is the
customer's. The organisation that registered the customer id first (its custodian) links the
first wallet, signed by that wallet; only the current wallet can hand over to a new one (both
sign); a lost wallet is recovered by the custodian's steward only after
WALLET_RECOVERY_DELAY_SECONDS, during which the current wallet can cancel. An organisation that
merely joined the customer later has no power over the wallet.

The gateway refuses up front only what the contract is certain to refuse for good (the deadline
before the latest block, a first link where a wallet is already linked, an organisation that is
not the custodian); every other answer comes from the contract: the sender simulates each write,
and a refusal is reported with the decoded custom error (`?wait=true`: a 422 `chain-refused`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from web3.contract import Contract

from crm_gateway.chain.contracts import Contracts
from crm_gateway.chain.eip712 import (
    cancel_wallet_recovery_typed_data,
    link_wallet_typed_data,
    rotate_wallet_typed_data,
)
from crm_gateway.pipeline.outbox import ChainWrite
from crm_gateway.services.access import Role
from crm_gateway.services.customers import Actor, CustomerService, CustomerWrite
from crm_gateway.services.errors import ChainRefusedError
from crm_gateway.services.operations import OperationService
from crm_gateway.store.models import AccessAction
from crm_gateway.vault.records import from_hex32

REGISTRY = "CustomerRegistry"
_ZERO_ADDRESS = "0x" + "0" * 40
#: Who may carry a customer's own signatures (rotation, cancellation) or complete a recovery.
CARRIERS = (Role.RELAYER, Role.DATA_STEWARD)
STEWARDS = (Role.DATA_STEWARD,)


def _refused(name: str, detail: str, **args: Any) -> ChainRefusedError:
    return ChainRefusedError(detail, error={"name": name, "args": args})


@dataclass(frozen=True)
class WalletState:
    """The customer's wallet as the registry has it now."""

    wallet: str | None
    nonce: int
    recovery_wallet: str | None
    recovery_ready_at: int | None
    recovery_delay_seconds: int


class WalletService:
    def __init__(
        self,
        *,
        customers: CustomerService,
        contracts: Contracts,
        operations: OperationService,
        gateway_org_id: int,
        signature_ttl_seconds: int,
    ) -> None:
        self._customers = customers
        self._contracts = contracts
        self._operations = operations
        self._org_id = gateway_org_id
        self._signature_ttl = signature_ttl_seconds

    @property
    def _registry(self) -> Contract:
        return self._contracts[REGISTRY]

    # --- reads ----------------------------------------------------------------------------

    def status(self, actor: Actor, customer_id: str) -> WalletState:
        """The linked wallet, the wallet nonce and the pending recovery, from the chain."""
        self._customers.authorise(
            actor, AccessAction.LINK_WALLET, (*CARRIERS, Role.AGENT), customer_id
        )
        return self._state(customer_id)

    def link_typed_data(self, actor: Actor, customer_id: str, wallet: str) -> dict[str, Any]:
        """`LinkWallet`, which `wallet` signs to be linked (first link) or to be the target of a
        rotation or a recovery."""
        self._customers.authorise(actor, AccessAction.LINK_WALLET, CARRIERS, customer_id)
        state = self._state(customer_id)
        return self._link_typed(customer_id, wallet, state.nonce, self._deadline())

    def rotation_typed_data(
        self, actor: Actor, customer_id: str, new_wallet: str
    ) -> dict[str, dict[str, Any]]:
        """What the current wallet (`RotateWallet`) and the new one (`LinkWallet`) sign, with
        the same nonce and deadline."""
        self._customers.authorise(actor, AccessAction.LINK_WALLET, CARRIERS, customer_id)
        state = self._state(customer_id)
        if state.wallet is None:
            raise _refused("NoWalletLinked", "the customer has no wallet", customerId=customer_id)
        deadline = self._deadline()
        return {
            "current_wallet": rotate_wallet_typed_data(
                self._contracts.chain.chain_id,
                self._registry.address,
                customer_id,
                state.wallet,
                new_wallet,
                state.nonce,
                deadline,
            ),
            "new_wallet": self._link_typed(customer_id, new_wallet, state.nonce, deadline),
        }

    def cancel_typed_data(self, actor: Actor, customer_id: str) -> dict[str, Any]:
        """`CancelWalletRecovery`, which the current wallet signs to stop a pending recovery."""
        self._customers.authorise(actor, AccessAction.LINK_WALLET, CARRIERS, customer_id)
        state = self._state(customer_id)
        if state.wallet is None or state.recovery_wallet is None:
            raise _refused("NoRecoveryPending", "no recovery is pending", customerId=customer_id)
        return cancel_wallet_recovery_typed_data(
            self._contracts.chain.chain_id,
            self._registry.address,
            customer_id,
            state.wallet,
            state.recovery_wallet,
            state.nonce,
            self._deadline(),
        )

    # --- writes ---------------------------------------------------------------------------

    def link(
        self,
        actor: Actor,
        customer_id: str,
        *,
        wallet: str,
        deadline: int,
        signature: str,
        idempotency_key: str | None,
    ) -> CustomerWrite:
        """First link (DATA_STEWARD of the custodian), signed by `wallet`. A customer who has a
        wallet is never re-linked this way: only a rotation or a delayed recovery replaces it."""
        self._customers.authorise(actor, AccessAction.LINK_WALLET, STEWARDS, customer_id)
        self._require_deadline(deadline)
        state = self._state(customer_id)
        if state.wallet is not None:
            raise _refused(
                "WalletAlreadyLinked",
                "the customer has a wallet: only it can hand over (rotation), or a delayed "
                "recovery by the custodian",
                customerId=customer_id,
                wallet=state.wallet,
            )
        self._require_custodian(customer_id)
        wallet = to_checksum_address(wallet)
        return self._submit(
            actor,
            customer_id,
            "customers.link_wallet",
            "linkWallet",
            [customer_id, wallet, deadline, signature],
            idempotency_key,
        )

    def rotate(
        self,
        actor: Actor,
        customer_id: str,
        *,
        new_wallet: str,
        deadline: int,
        current_signature: str,
        new_signature: str,
        idempotency_key: str | None,
    ) -> CustomerWrite:
        """Carry a rotation signed by the current wallet and the new one (RELAYER or
        DATA_STEWARD key; the signatures decide)."""
        self._customers.authorise(actor, AccessAction.LINK_WALLET, CARRIERS, customer_id)
        self._require_deadline(deadline)
        return self._submit(
            actor,
            customer_id,
            "customers.rotate_wallet",
            "rotateWallet",
            [
                customer_id,
                to_checksum_address(new_wallet),
                deadline,
                current_signature,
                new_signature,
            ],
            idempotency_key,
        )

    def start_recovery(
        self,
        actor: Actor,
        customer_id: str,
        *,
        wallet: str,
        deadline: int,
        signature: str,
        idempotency_key: str | None,
    ) -> CustomerWrite:
        """Start a delayed recovery to `wallet` (DATA_STEWARD of the custodian; `wallet` signs
        `LinkWallet`)."""
        self._customers.authorise(actor, AccessAction.LINK_WALLET, STEWARDS, customer_id)
        self._require_deadline(deadline)
        self._require_custodian(customer_id)
        return self._submit(
            actor,
            customer_id,
            "customers.start_wallet_recovery",
            "startWalletRecovery",
            [customer_id, to_checksum_address(wallet), deadline, signature],
            idempotency_key,
        )

    def cancel_recovery(
        self,
        actor: Actor,
        customer_id: str,
        *,
        deadline: int,
        signature: str,
        idempotency_key: str | None,
    ) -> CustomerWrite:
        """Carry the current wallet's cancellation of a pending recovery."""
        self._customers.authorise(actor, AccessAction.LINK_WALLET, CARRIERS, customer_id)
        self._require_deadline(deadline)
        return self._submit(
            actor,
            customer_id,
            "customers.cancel_wallet_recovery",
            "cancelWalletRecoveryBySig",
            [customer_id, deadline, signature],
            idempotency_key,
        )

    def complete_recovery(
        self, actor: Actor, customer_id: str, *, idempotency_key: str | None
    ) -> CustomerWrite:
        """Complete a recovery whose delay has passed (the contract checks the delay)."""
        self._customers.authorise(actor, AccessAction.LINK_WALLET, CARRIERS, customer_id)
        return self._submit(
            actor,
            customer_id,
            "customers.complete_wallet_recovery",
            "completeWalletRecovery",
            [customer_id],
            idempotency_key,
        )

    # --- helpers --------------------------------------------------------------------------

    def _state(self, customer_id: str) -> WalletState:
        raw = from_hex32(customer_id)
        registry = self._registry.functions
        _status, _at, wallet, _holders = registry.customer(raw).call()
        recovery_wallet, ready_at = registry.walletRecovery(raw).call()
        pending = recovery_wallet != _ZERO_ADDRESS
        return WalletState(
            wallet=None if wallet == _ZERO_ADDRESS else to_checksum_address(wallet),
            nonce=int(registry.walletNonce(raw).call()),
            recovery_wallet=to_checksum_address(recovery_wallet) if pending else None,
            recovery_ready_at=int(ready_at) if pending else None,
            recovery_delay_seconds=int(registry.walletRecoveryDelay().call()),
        )

    def _require_custodian(self, customer_id: str) -> None:
        """Refuse unless this organisation registered the customer first. The custodian flag is
        set only at the first registration and never comes back once gone, so the refusal is
        the contract's for good."""
        holding = self._registry.functions.holding(from_hex32(customer_id), self._org_id).call()
        if not bool(holding[3]):
            raise _refused(
                "NotWalletCustodian",
                f"organisation {self._org_id} did not register this customer first: it has no "
                "power over the customer's wallet",
                customerId=customer_id,
                orgId=self._org_id,
            )

    def _chain_time(self) -> int:
        return int(self._contracts.chain.w3.eth.get_block("latest")["timestamp"])

    def _deadline(self) -> int:
        return self._chain_time() + self._signature_ttl

    def _require_deadline(self, deadline: int) -> None:
        if deadline < self._chain_time():
            raise _refused(
                "ExpiredSignature", "the signature's deadline has passed", deadline=deadline
            )

    def _link_typed(
        self, customer_id: str, wallet: str, nonce: int, deadline: int
    ) -> dict[str, Any]:
        return link_wallet_typed_data(
            self._contracts.chain.chain_id,
            self._registry.address,
            customer_id,
            wallet,
            nonce,
            deadline,
        )

    def _submit(
        self,
        actor: Actor,
        customer_id: str,
        kind: str,
        function: str,
        args: list[Any],
        idempotency_key: str | None,
    ) -> CustomerWrite:
        write = ChainWrite(kind, REGISTRY, function, args, actor.account)
        operation, created = self._operations.submit(
            write,
            api_key_id=actor.api_key_id,
            idempotency_key=idempotency_key,
            payload={"function": function, "args": args},
        )
        return CustomerWrite(customer_id, operation, created)
