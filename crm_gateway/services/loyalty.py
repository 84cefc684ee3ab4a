"""Coalition loyalty points: merchants earn, reward and redeem; customers move their own points.

One LoyaltyPoints token (ERC-20 + EIP-2612) for every merchant of the consortium. Who may do what:

* MERCHANT accounts (their API keys' accounts sign through the pipeline) earn points to a
  customer's registered wallet, reward a customer action once per action hash, and redeem points
  within the customer's allowance: with the customer's EIP-2612 permit in the same transaction
  (`redeemWithPermit`), or after the customer's own `approve`.
* Customers decide with their own key: their wallet signs an EIP-2612 permit (approve by
  signature), which a RELAYER key submits, or signs its own transaction calling the token's
  `transfer`, `transferFrom`, `approve` or `permit`, which the gateway checks and broadcasts.

Transfers between customers are the customer's own raw transactions, not a permit to a gateway
account followed by its `transferFrom`: a permit binds owner, spender, amount, nonce and deadline
but not the receiver, so a relayer holding the allowance could send the points anywhere, and the
allowance would outlive a failed second step; the customer's own transaction binds the receiver
and amount under the customer's signature and needs no trust in the gateway (on the consortium's
networks gas is usually free; on the development chains the wallet needs a little ether).

Every write is checked here first, against the chain, as the contract would check it, so a call
that would revert is refused with the contract's own error name and nothing is queued or sent.
Reads (balances, histories, settlement) come from the read model, with the block they hold for.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any, Protocol

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3.contract import Contract
from web3.exceptions import TimeExhausted, TransactionNotFound

from crm_gateway.chain.contracts import Contracts
from crm_gateway.chain.errors import revert_data
from crm_gateway.chain.jsonable import to_jsonable
from crm_gateway.chain.rawtx import (
    MalformedTransactionError,
    RawTransaction,
    decode_raw_transaction,
)
from crm_gateway.indexer.loyalty_read_model import LoyaltyMovementView, LoyaltyQueries
from crm_gateway.pipeline.outbox import ChainWrite
from crm_gateway.services.errors import (
    ChainRefusedError,
    ConflictError,
    DomainError,
    NotFoundError,
    PermissionDeniedError,
)

POINTS = "LoyaltyPoints"
REGISTRY = "CustomerRegistry"
CONSORTIUM = "Consortium"
ZERO_ADDRESS = "0x" + "0" * 40
MAX_UINT256 = 2**256 - 1
#: Half the secp256k1 order: OpenZeppelin's ECDSA refuses signatures with a higher `s`.
_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HEX32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_CUSTOMER_ACTIVE, _CUSTOMER_ERASED = 1, 2
MERCHANT_ROLE = "0x" + keccak(text="MERCHANT").hex()
RELAYER_ROLE = "0x" + keccak(text="RELAYER").hex()
#: What a customer's own transaction to the token may call.
CUSTOMER_FUNCTIONS = ("transfer", "transferFrom", "approve", "permit")

_EIP712_DOMAIN = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
_PERMIT = [
    {"name": "owner", "type": "address"},
    {"name": "spender", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
_TOKEN_NAMES: dict[tuple[int, str], str] = {}


class TransferPolicy(IntEnum):
    """`LoyaltyPoints.TransferPolicy`, by ordinal."""

    REGISTERED_ONLY = 0
    FREE = 1
    NON_TRANSFERABLE = 2


class Period(StrEnum):
    """How settlement figures are grouped: per UTC day, ISO week, calendar month, or in total."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    TOTAL = "total"


class RoleReader(Protocol):
    """The read model's role and customer lookups (answered without the chain)."""

    def has_role(self, role: str | bytes, account: str) -> bool: ...

    def organization_of(self, account: str) -> int | None: ...


def _refused(name: str, detail: str, **args: Any) -> ChainRefusedError:
    return ChainRefusedError(detail, error={"name": name, "args": args})


def reason_code(reason: str) -> str:
    """A reason code or action as bytes32: a `0x` + 64-hex value as given, else keccak256 of it."""
    if _HEX32.fullmatch(reason):
        return reason.lower()
    return "0x" + keccak(text=reason).hex()


@dataclass(frozen=True)
class Permit:
    """An EIP-2612 permit as the owner's wallet signed it (65-byte signature, hex)."""

    owner: str
    spender: str
    value: int
    deadline: int
    signature: str
    nonce: int | None = None  # the nonce the wallet signed, when the client says (for errors)

    def vrs(self) -> tuple[int, str, str]:
        raw = bytes.fromhex(self.signature[2:])
        return raw[64], "0x" + raw[:32].hex(), "0x" + raw[32:64].hex()


@dataclass(frozen=True)
class Holder:
    """Whose points: a wallet, and the customer it belongs to when the caller named one."""

    wallet: str
    customer_id: str | None


class LoyaltyService:
    def __init__(
        self,
        *,
        contracts: Contracts,
        loyalty: LoyaltyQueries,
        roles: RoleReader,
        customer_wallet: Callable[[str], str | None],
        signature_ttl_seconds: int,
        org_names: Callable[[], dict[int, str]] | None = None,
    ) -> None:
        self._contracts = contracts
        self._loyalty = loyalty
        self._roles = roles
        self._customer_wallet = customer_wallet
        self._signature_ttl = signature_ttl_seconds
        self._org_names = org_names

    @property
    def _token(self) -> Contract:
        return self._contracts[POINTS]

    @property
    def _registry(self) -> Contract:
        return self._contracts[REGISTRY]

    @property
    def address(self) -> str:
        return str(self._token.address)

    # --- who ------------------------------------------------------------------------------

    def _require_role(self, actor: str, role: str, role_id: str) -> int:
        """`actor`'s organisation if it holds `role` in force (read model, then the chain when
        the read model says no, since it may lag a fresh grant); else 403 with the contract's
        error."""
        account = to_checksum_address(actor)
        org_id = (
            self._roles.organization_of(account) if self._roles.has_role(role, account) else None
        )
        if not org_id:
            consortium = self._contracts[CONSORTIUM].functions
            if bool(consortium.hasActiveRole(role_id, account).call()):
                org_id = int(consortium.organizationOf(account).call())
        if not org_id:
            raise PermissionDeniedError(
                f"account {account} is not a {role} of an active organisation",
                required_role=role,
                error={
                    "name": "AccessControlUnauthorizedAccount",
                    "args": {"account": account, "neededRole": role_id},
                },
            )
        return org_id

    def holder_for_write(self, customer: str) -> Holder:
        """A wallet as given, or the wallet registered on-chain for a customer id (the chain
        decides: the customer must be active and have a wallet)."""
        if _ADDRESS.fullmatch(customer):
            return Holder(to_checksum_address(customer), None)
        if not _HEX32.fullmatch(customer):
            raise DomainError(
                "give a customer id (0x + 64 hex digits) or a wallet address", field="customer"
            )
        customer_id = customer.lower()
        status, _at, wallet, _holders = self._registry.functions.customer(customer_id).call()
        if int(status) == _CUSTOMER_ERASED:
            raise _refused("CustomerIsErased", "the customer was erased", customerId=customer_id)
        if int(status) != _CUSTOMER_ACTIVE:
            raise _refused("UnknownCustomer", "no such customer on-chain", customerId=customer_id)
        if wallet == ZERO_ADDRESS:
            raise _refused(
                "CustomerWithoutWallet",
                "the customer has no registered wallet to hold points",
                customerId=customer_id,
            )
        return Holder(to_checksum_address(wallet), customer_id)

    def holder_for_read(self, customer: str) -> Holder:
        """A wallet as given, or the wallet the read model has for a customer id."""
        if _ADDRESS.fullmatch(customer):
            return Holder(to_checksum_address(customer), None)
        if not _HEX32.fullmatch(customer):
            raise DomainError(
                "give a customer id (0x + 64 hex digits) or a wallet address", field="customer"
            )
        wallet = self._customer_wallet(customer.lower())
        if wallet is None:
            raise NotFoundError(f"customer {customer} has no registered wallet")
        return Holder(to_checksum_address(wallet), customer.lower())

    # --- checks the contract makes ---------------------------------------------------------

    def _require_not_paused(self) -> None:
        if bool(self._token.functions.paused().call()):
            raise _refused("EnforcedPause", "the loyalty token is paused")

    def _require_active_wallet(self, wallet: str) -> None:
        if not bool(self._registry.functions.isActiveWallet(wallet).call()):
            raise _refused(
                "WalletNotRegistered",
                f"{wallet} is not the wallet of an active customer",
                wallet=wallet,
            )

    def _require_issuable(self, wallet: str, amount: int) -> None:
        if amount == 0:
            raise _refused("ZeroAmount", "the amount must not be zero")
        if wallet == ZERO_ADDRESS:
            raise _refused("ERC20InvalidReceiver", "points cannot go to 0x0", receiver=wallet)
        self._require_active_wallet(wallet)
        self._require_not_paused()

    def _require_balance(self, owner: str, amount: int) -> None:
        balance = int(self._token.functions.balanceOf(owner).call())
        if balance < amount:
            raise _refused(
                "ERC20InsufficientBalance",
                f"{owner} holds {balance} points, {amount} are needed",
                sender=owner,
                balance=balance,
                needed=amount,
            )

    def _require_allowance(self, owner: str, spender: str, amount: int) -> None:
        allowance = int(self._token.functions.allowance(owner, spender).call())
        if allowance < amount:
            raise _refused(
                "ERC20InsufficientAllowance",
                f"{owner} allows {spender} {allowance} points, {amount} are needed",
                spender=spender,
                allowance=allowance,
                needed=amount,
            )

    def _require_transferable(self, sender: str, receiver: str, amount: int) -> None:
        """`_transfer` and `_update` of the token for a move between holders, in its order."""
        if receiver == ZERO_ADDRESS:
            raise _refused(
                "ERC20InvalidReceiver", "points cannot be sent to 0x0", receiver=receiver
            )
        self._require_not_paused()
        policy = TransferPolicy(int(self._token.functions.transferPolicy().call()))
        if policy is TransferPolicy.NON_TRANSFERABLE or (
            policy is TransferPolicy.REGISTERED_ONLY
            and not bool(self._registry.functions.isActiveWallet(receiver).call())
        ):
            raise _refused(
                "TransferNotAllowed",
                f"the {policy.name} policy refuses a transfer to {receiver}",
                policy=int(policy),
                **{"from": sender, "to": receiver},
            )
        self._require_balance(sender, amount)

    def _permit_error(self, permit: Permit) -> ChainRefusedError | None:
        """What `permit(...)` would revert with now, or None if it would succeed."""
        if permit.deadline < int(time.time()):
            return _refused(
                "ERC2612ExpiredSignature",
                "the permit's deadline has passed",
                deadline=permit.deadline,
            )
        v, _r, s = permit.vrs()
        if v not in (27, 28):
            return _refused("ECDSAInvalidSignature", "the signature's v must be 27 or 28")
        if int(s, 16) > _HALF_N:
            return _refused("ECDSAInvalidSignatureS", "the signature's s is too high", s=s)
        nonce = int(self._token.functions.nonces(permit.owner).call())
        typed = self._typed(permit.owner, permit.spender, permit.value, nonce, permit.deadline)
        try:
            signer = to_checksum_address(
                Account.recover_message(
                    encode_typed_data(full_message=typed), vrs=(v, *_rs(permit))
                )
            )
        except Exception:  # a signature that recovers to nothing: bad v, r or s
            return _refused("ECDSAInvalidSignature", "the signature is malformed")
        if signer != permit.owner:
            used = permit.nonce is not None and permit.nonce < nonce
            detail = (
                f"the permit was signed for nonce {permit.nonce}, which is used: "
                f"the owner's next nonce is {nonce}"
                if used
                else "the permit was not signed by its owner for these values and the owner's "
                f"next nonce {nonce}"
            )
            return _refused("ERC2612InvalidSigner", detail, signer=signer, owner=permit.owner)
        return None

    def _require_spender(self, spender: str) -> None:
        if spender == ZERO_ADDRESS:
            raise _refused("ERC20InvalidSpender", "the spender cannot be 0x0", spender=spender)

    # --- merchants -------------------------------------------------------------------------

    def earn(self, actor: str, customer: str, amount: int, reason: str) -> ChainWrite:
        """Issue points to a customer's wallet for the actor's organisation (MERCHANT)."""
        self._require_role(actor, "MERCHANT", MERCHANT_ROLE)
        holder = self.holder_for_write(customer)
        self._require_issuable(holder.wallet, amount)
        return ChainWrite(
            "loyalty.earn",
            POINTS,
            "earn",
            [holder.wallet, amount, reason_code(reason)],
            to_checksum_address(actor),
        )

    def reward(self, actor: str, customer: str, amount: int, action: str) -> ChainWrite:
        """Issue points for a customer action (a survey answered, ...), once per action hash."""
        self._require_role(actor, "MERCHANT", MERCHANT_ROLE)
        action_hash = reason_code(action)
        if int(action_hash, 16) == 0:
            raise _refused("InvalidActionHash", "the action hash must not be zero")
        rewarded_by = int(self._token.functions.rewardedBy(action_hash).call())
        if rewarded_by != 0:
            raise _refused(
                "ActionAlreadyRewarded",
                f"the action was rewarded already, by organisation {rewarded_by}",
                actionHash=action_hash,
                orgId=rewarded_by,
            )
        holder = self.holder_for_write(customer)
        self._require_issuable(holder.wallet, amount)
        return ChainWrite(
            "loyalty.reward",
            POINTS,
            "reward",
            [holder.wallet, amount, action_hash],
            to_checksum_address(actor),
        )

    def redeem(
        self,
        actor: str,
        customer: str,
        amount: int,
        reason: str,
        *,
        deadline: int | None = None,
        signature: str | None = None,
        nonce: int | None = None,
    ) -> ChainWrite:
        """Redeem points at the actor's organisation (MERCHANT): with the customer's permit for
        the actor (`redeemWithPermit`, one transaction), or within an allowance the customer gave
        by their own `approve`."""
        merchant = to_checksum_address(actor)
        self._require_role(merchant, "MERCHANT", MERCHANT_ROLE)
        if amount == 0:
            raise _refused("ZeroAmount", "the amount must not be zero")
        owner = self.holder_for_write(customer).wallet
        code = reason_code(reason)
        if (deadline is None) != (signature is None):
            raise DomainError("give both deadline and signature of the permit, or neither")
        if deadline is None or signature is None:
            self._require_allowance(owner, merchant, amount)
            self._require_not_paused()
            self._require_balance(owner, amount)
            return ChainWrite("loyalty.redeem", POINTS, "redeem", [owner, amount, code], merchant)
        permit = Permit(owner, merchant, amount, deadline, signature, nonce)
        error = self._permit_error(permit)
        # As the contract: a failed permit is forgiven when the allowance already covers it (the
        # same permit was submitted first by someone else).
        if error is not None and int(self._token.functions.allowance(owner, merchant).call()) < (
            amount
        ):
            raise error
        self._require_not_paused()
        self._require_balance(owner, amount)
        v, r, s = permit.vrs()
        return ChainWrite(
            "loyalty.redeem_with_permit",
            POINTS,
            "redeemWithPermit",
            [owner, amount, code, deadline, v, r, s],
            merchant,
        )

    # --- customers' signatures -------------------------------------------------------------

    def relay_permit(
        self,
        actor: str,
        owner: str,
        spender: str,
        value: int,
        deadline: int,
        signature: str,
        nonce: int | None = None,
    ) -> ChainWrite:
        """Submit a customer's EIP-2612 permit (approve by signature) from a RELAYER key; the
        owner is a wallet or a customer id (its registered wallet)."""
        self._require_role(actor, "RELAYER", RELAYER_ROLE)
        holder = self.holder_for_write(owner)
        permit = Permit(
            holder.wallet, to_checksum_address(spender), value, deadline, signature, nonce
        )
        self._require_spender(permit.spender)
        error = self._permit_error(permit)
        if error is not None:
            raise error
        v, r, s = permit.vrs()
        return ChainWrite(
            "loyalty.permit",
            POINTS,
            "permit",
            [permit.owner, permit.spender, permit.value, permit.deadline, v, r, s],
            to_checksum_address(actor),
        )

    def permit_typed_data(
        self, customer: str, spender: str, value: int, deadline: int | None = None
    ) -> dict[str, Any]:
        """The EIP-712 typed data (eth_signTypedData_v4) of a permit the customer's wallet signs:
        the token's domain, the owner's next nonce, and a deadline (default: the signature TTL)."""
        owner = self.holder_for_write(customer).wallet
        nonce = int(self._token.functions.nonces(owner).call())
        if deadline is None:
            deadline = int(time.time()) + self._signature_ttl
        return self._typed(owner, to_checksum_address(spender), value, nonce, deadline)

    def _typed(
        self, owner: str, spender: str, value: int, nonce: int, deadline: int
    ) -> dict[str, Any]:
        return {
            "types": {"EIP712Domain": _EIP712_DOMAIN, "Permit": _PERMIT},
            "primaryType": "Permit",
            "domain": {
                "name": self._token_name(),
                "version": "1",
                "chainId": self._contracts.chain.chain_id,
                "verifyingContract": self.address,
            },
            "message": {
                "owner": owner,
                "spender": spender,
                "value": value,
                "nonce": nonce,
                "deadline": deadline,
            },
        }

    def _token_name(self) -> str:
        key = (self._contracts.chain.chain_id, self.address)
        name = _TOKEN_NAMES.get(key)
        if name is None:
            name = _TOKEN_NAMES[key] = str(self._token.functions.name().call())
        return name

    # --- the customer's own transaction ----------------------------------------------------

    def is_token_transaction(self, raw: bytes) -> bool:
        """Whether a signed transaction calls the loyalty token (for `/v1/transactions/raw`)."""
        try:
            return decode_raw_transaction(raw).to == self.address
        except MalformedTransactionError:
            return False

    def broadcast_raw(self, raw: bytes) -> str:
        """Check a customer wallet's own signed call of `transfer`, `transferFrom`, `approve` or
        `permit` as the token would, then broadcast it as it is; return its hash.

        It is not ours to sign or to nonce, so it does not go through the outbox; sending the
        same bytes again is harmless (the hash of a transaction the node has is answered as is).
        """
        try:
            tx = decode_raw_transaction(raw)
        except MalformedTransactionError as exc:
            raise DomainError(str(exc), field="raw") from exc
        w3 = self._contracts.chain.w3
        chain_id = self._contracts.chain.chain_id
        if tx.chain_id is not None and tx.chain_id != chain_id:
            raise DomainError(f"the transaction is for chain {tx.chain_id}, this is {chain_id}")
        if tx.to != self.address:
            raise DomainError(
                "the transaction must call the LoyaltyPoints token", token=self.address
            )
        if self._known(tx.tx_hash):
            return tx.tx_hash
        self._check_customer_call(tx)
        expected = int(w3.eth.get_transaction_count(to_checksum_address(tx.sender), "pending"))
        if tx.nonce != expected:
            raise ConflictError(
                f"the transaction has nonce {tx.nonce}; the wallet's next is {expected}",
                expected_nonce=expected,
            )
        try:
            w3.eth.send_raw_transaction(raw)
        except Exception as exc:  # the node's refusal (funds, gas, ...): the client's to fix
            raise DomainError(f"the node refused the transaction: {exc}") from exc
        return tx.tx_hash

    def _known(self, tx_hash: str) -> bool:
        try:
            self._contracts.chain.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return False
        return True

    def _check_customer_call(self, tx: RawTransaction) -> None:
        sender = tx.sender
        token = self._token.functions
        registered = bytes(self._registry.functions.customerOfWallet(sender).call()) != bytes(32)
        if not registered and int(token.balanceOf(sender).call()) == 0:
            raise PermissionDeniedError(
                f"{sender} is neither a registered customer wallet nor a holder of points"
            )
        try:
            function, args = self._token.decode_function_input(tx.data)
        except ValueError as exc:
            raise DomainError("the transaction does not call a LoyaltyPoints function") from exc
        name = function.fn_name
        if name not in CUSTOMER_FUNCTIONS:
            raise DomainError(
                f"a customer's own transaction may call {', '.join(CUSTOMER_FUNCTIONS)}, not {name}"
            )
        if name == "transfer":
            self._require_transferable(sender, to_checksum_address(args["to"]), int(args["value"]))
        elif name == "transferFrom":
            owner = to_checksum_address(args["from"])
            self._require_allowance(owner, sender, int(args["value"]))
            self._require_transferable(owner, to_checksum_address(args["to"]), int(args["value"]))
        elif name == "approve":
            self._require_spender(to_checksum_address(args["spender"]))
        else:
            permit = Permit(
                to_checksum_address(args["owner"]),
                to_checksum_address(args["spender"]),
                int(args["value"]),
                int(args["deadline"]),
                "0x"
                + bytes(args["r"]).hex()
                + bytes(args["s"]).hex()
                + int(args["v"]).to_bytes(1, "big").hex(),
            )
            self._require_spender(permit.spender)
            error = self._permit_error(permit)
            if error is not None:
                raise error
        self._simulate(tx)

    def _simulate(self, tx: RawTransaction) -> None:
        """The authoritative check: the call run on the latest state, its revert decoded."""
        try:
            self._contracts.chain.w3.eth.call(
                {"from": tx.sender, "to": tx.to, "data": tx.data}  # type: ignore[typeddict-item]
            )
        except Exception as exc:
            data = revert_data(exc)
            if data is None:
                raise
            revert = self._contracts.artifacts.error_decoder.decode_data(data)
            raise _refused(
                revert.name, f"the token would refuse the transaction: {revert}", **revert.args
            ) from exc

    def receipt(self, tx_hash: str, timeout: float) -> dict[str, Any]:
        """Where a broadcast transaction stands: submitted, or confirmed/failed with its block
        and decoded events, after waiting up to `timeout` seconds for the receipt."""
        w3 = self._contracts.chain.w3
        try:
            receipt = w3.eth.wait_for_transaction_receipt(
                tx_hash,  # type: ignore[arg-type]
                timeout=timeout,
                poll_latency=0.05,
            )
        except TimeExhausted:
            return {"tx_hash": tx_hash, "status": "submitted", "block_number": None}
        return {
            "tx_hash": tx_hash,
            "status": "confirmed" if int(receipt["status"]) == 1 else "failed",
            "block_number": int(receipt["blockNumber"]),
            "gas_used": int(receipt["gasUsed"]),
            "events": to_jsonable(self._contracts.decode_receipt(receipt)),
        }

    # --- reads ----------------------------------------------------------------------------

    def allowance(self, owner: str, spender: str) -> dict[str, Any]:
        """`allowance(owner, spender)` on the chain (the read model keeps no approvals)."""
        w3 = self._contracts.chain.w3
        block = int(w3.eth.block_number)
        holder = self.holder_for_read(owner).wallet
        spender = to_checksum_address(spender)
        value = int(self._token.functions.allowance(holder, spender).call(block_identifier=block))
        return {
            "owner": holder,
            "spender": spender,
            "allowance": value,
            "block": block,
            "consistency": "chain",
        }

    def balance(
        self, customer: str, *, as_of_block: int | None = None, consistency: str = "read_model"
    ) -> dict[str, Any]:
        """A customer's (or wallet's) balance from the read model, now or at `as_of_block`; with
        consistency=chain, `balanceOf` on the chain at that block (default: the latest)."""
        holder = self.holder_for_read(customer)
        if consistency == "chain":
            w3 = self._contracts.chain.w3
            block = int(w3.eth.block_number) if as_of_block is None else as_of_block
            value = int(self._token.functions.balanceOf(holder.wallet).call(block_identifier=block))
            return _balance_json(holder, value, block, block, "chain")
        view = self._loyalty.balance(holder.wallet, at_block=as_of_block)
        if as_of_block is not None and (view.as_of_block is None or as_of_block > view.as_of_block):
            raise ConflictError(
                f"the read model is at block {view.as_of_block}, before block {as_of_block}; "
                "ask again shortly or use consistency=chain",
                as_of_block=view.as_of_block,
            )
        return _balance_json(holder, view.balance, view.block, view.as_of_block, "read_model")

    def history(self, customer: str, *, from_block: int = 0, limit: int = 1000) -> dict[str, Any]:
        """A customer's (or wallet's) balance changes, oldest first, from the read model."""
        holder = self.holder_for_read(customer)
        as_of = self._loyalty.balance(holder.wallet).as_of_block
        movements = self._loyalty.movements(holder.wallet, from_block=from_block, limit=limit)
        return {
            "customer_id": holder.customer_id,
            "wallet": holder.wallet,
            "as_of_block": as_of,
            "movements": [_movement_json(m, holder.wallet) for m in movements],
        }

    def settlement(
        self,
        from_time: datetime | None,
        to_time: datetime | None,
        period: Period = Period.MONTH,
    ) -> dict[str, Any]:
        """Per merchant organisation: points issued (earn, reward), redeemed and net (issued -
        redeemed), per period and over the whole window `[from, to)` (block times, UTC)."""
        if from_time is not None and to_time is not None and to_time <= from_time:
            raise DomainError("`to` must be after `from`", field="to")
        rows = self._loyalty.settlement(from_time, to_time)
        names = self._org_names() if self._org_names is not None else {}
        periods: dict[date, dict[int, list[int]]] = {}
        totals: dict[int, list[int]] = {}
        for row in rows.days:
            start = _period_start(row.day, period)
            for bucket in (periods.setdefault(start, {}), totals):
                pair = bucket.setdefault(row.org_id, [0, 0])
                pair[0] += row.issued
                pair[1] += row.redeemed

        def figures(by_org: dict[int, list[int]]) -> list[dict[str, Any]]:
            return [
                {
                    "org_id": org_id,
                    "name": names.get(org_id),
                    "issued": issued,
                    "redeemed": redeemed,
                    "net": issued - redeemed,
                }
                for org_id, (issued, redeemed) in sorted(by_org.items())
            ]

        return {
            "from": from_time.isoformat() if from_time else None,
            "to": to_time.isoformat() if to_time else None,
            "period": period.value,
            "as_of_block": rows.as_of_block,
            "totals": figures(totals),
            "periods": [
                {
                    "start": start.isoformat(),
                    "end": _period_end(start, period).isoformat()
                    if period is not Period.TOTAL
                    else None,
                    "organizations": figures(by_org),
                }
                for start, by_org in sorted(periods.items())
            ],
        }


def _rs(permit: Permit) -> tuple[int, int]:
    _v, r, s = permit.vrs()
    return int(r, 16), int(s, 16)


def _period_start(day: date, period: Period) -> date:
    if period is Period.DAY:
        return day
    if period is Period.WEEK:
        return day - timedelta(days=day.weekday())
    if period is Period.MONTH:
        return day.replace(day=1)
    return date(1970, 1, 1)


def _period_end(start: date, period: Period) -> date:
    if period is Period.DAY:
        return start + timedelta(days=1)
    if period is Period.WEEK:
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def _balance_json(
    holder: Holder, balance: int, block: int | None, as_of: int | None, consistency: str
) -> dict[str, Any]:
    return {
        "customer_id": holder.customer_id,
        "wallet": holder.wallet,
        "balance": balance,
        "block": block,
        "as_of_block": as_of,
        "consistency": consistency,
    }


def _movement_json(movement: LoyaltyMovementView, wallet: str) -> dict[str, Any]:
    return {
        "kind": movement.kind,
        "direction": "in" if movement.to_wallet == wallet else "out",
        "amount": movement.amount,
        "org_id": movement.org_id,
        "merchant": movement.merchant,
        "reason": movement.reason,
        "from": movement.from_wallet,
        "to": movement.to_wallet,
        "block_number": movement.block_number,
        "tx_hash": movement.tx_hash,
        "log_index": movement.log_index,
        "time": movement.moved_at.astimezone(UTC).isoformat(),
    }


__all__ = [
    "CUSTOMER_FUNCTIONS",
    "POINTS",
    "Holder",
    "LoyaltyService",
    "Period",
    "Permit",
    "TransferPolicy",
    "reason_code",
]
