"""Consent: purposes, customers' signed consent changes, checks, history and receipts.

A customer decides with their own key: either their wallet sends a transaction to the
ConsentLedger, or it signs EIP-712 typed data that a RELAYER key submits. The ConsentLedger is the
one source of the rules: before anything is queued the gateway refuses only what the contract is
certain to refuse for good (a strict, cheap subset of its checks, see `ConsentService._check`),
with the contract's custom error name; everything else is decided by the contract (the sender
simulates each write, and a refusal comes back with the decoded custom error).
Hot questions (may this customer's data be used for this purpose?) are answered from the read
model the indexer keeps; `consistency="chain"` asks the contract instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3.contract import Contract

from crm_gateway.chain.calls import call_batch
from crm_gateway.chain.contracts import Contracts
from crm_gateway.chain.eip712 import (
    CONSENT_CHANGE_FIELDS,
    StructHasher,
    consent_change_typed_data,
    domain_separator,
    recover_signer,
)
from crm_gateway.chain.rawtx import MalformedTransactionError, decode_raw_transaction
from crm_gateway.indexer.read_model import (
    PROCESSING_ANSWERS,
    ConsentChangeView,
    ConsentDecision,
    ReadModel,
)
from crm_gateway.pipeline.outbox import ChainWrite
from crm_gateway.services.access import AccessService, Role
from crm_gateway.services.consent_access import (
    HISTORY_ROLES,
    ConsentReader,
    authorise,
    authorise_audience,
    concerns,
)
from crm_gateway.services.errors import (
    ChainRefusedError,
    DomainError,
    NotFoundError,
    PermissionDeniedError,
)
from crm_gateway.services.processing import (
    require_processing,
)

LEDGER = "ConsentLedger"
PURPOSES = "PurposeRegistry"
REGISTRY = "CustomerRegistry"
_ZERO_ADDRESS = "0x" + "0" * 40
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
_HEX32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_CUSTOMER_ACTIVE, _CUSTOMER_ERASED = 1, 2
RECEIPT_SCHEMA_VERSION = "crm-chaincode/consent-receipt/1"


class LawfulBasis(StrEnum):
    """GDPR Art. 6 bases, in the order of the contract's enum."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    LEGITIMATE_INTEREST = "legitimate_interest"

    @property
    def ordinal(self) -> int:
        return list(LawfulBasis).index(self)


@lru_cache(maxsize=4096)
def purpose_id(purpose: str) -> str:
    """The on-chain id of a purpose: a `0x` id as given, or keccak256 of its slug (cached: a
    consent check names its purpose on every request)."""
    if _HEX32.fullmatch(purpose):
        return purpose.lower()
    if not _SLUG.fullmatch(purpose):
        raise DomainError(
            f"purpose {purpose!r} is neither a 32-byte hex id nor a slug like marketing.email",
            field="purpose",
        )
    return "0x" + keccak(text=purpose).hex()


_CONSENT_CHANGE_NAMES = tuple(name for name, _kind in CONSENT_CHANGE_FIELDS)


def _raw32(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def _wallet(customer_id: str, record: Sequence[Any]) -> str:
    """The registered wallet in a `CustomerRegistry.customer` record, or the contract's refusal."""
    status, _at, wallet, _holders = record
    if int(status) == _CUSTOMER_ERASED:
        raise _refused("CustomerIsErased", "the customer was erased", customerId=customer_id)
    if int(status) != _CUSTOMER_ACTIVE:
        raise _refused("UnknownCustomer", "no such customer on-chain", customerId=customer_id)
    if wallet == _ZERO_ADDRESS:
        raise _refused(
            "CustomerWithoutWallet",
            "the customer has no registered wallet to sign with",
            customerId=customer_id,
        )
    return str(to_checksum_address(wallet))


def _refused(name: str, detail: str, **args: Any) -> ChainRefusedError:
    return ChainRefusedError(detail, error={"name": name, "args": args})


@dataclass(frozen=True)
class SignedChange:
    """One consent change as the customer's wallet signed it."""

    customer_id: str
    purpose_id: str
    purpose_version: int
    org_id: int
    granted: bool
    expires_at: int
    nonce: int
    deadline: int
    signature: str

    def as_tuple(self) -> list[Any]:
        return [
            self.customer_id,
            self.purpose_id,
            self.purpose_version,
            self.org_id,
            self.granted,
            self.expires_at,
            self.nonce,
            self.deadline,
        ]

    def as_message(self) -> dict[str, Any]:
        """The typed data's message (what the wallet signed): the struct `as_tuple` gives the
        contract, field by field, named as in `ConsentChange`."""
        return dict(zip(_CONSENT_CHANGE_NAMES, self.as_tuple(), strict=True))


class ConsentService:
    def __init__(
        self,
        *,
        contracts: Contracts,
        read_model: ReadModel,
        signature_ttl_seconds: int,
    ) -> None:
        self._contracts = contracts
        self._read_model = read_model
        self._access = AccessService(contracts)
        self._signature_ttl = signature_ttl_seconds
        self._hasher: StructHasher | None = None
        self._max_lifetime: int | None = None

    @property
    def _ledger(self) -> Contract:
        return self._contracts[LEDGER]

    @property
    def _purposes(self) -> Contract:
        return self._contracts[PURPOSES]

    #: The consent policy this is (`services.policy.ConsentPolicy`): the processing rule.
    policy_name = "processing-rule"

    # --- purposes -------------------------------------------------------------------------

    def define_purpose(
        self, actor: str, purpose: str, notice_hash: str, basis: LawfulBasis
    ) -> ChainWrite:
        """Register a purpose; the actor's organisation becomes its controller (ORG_ADMIN)."""
        self._access.require_org_admin(actor)
        pid = purpose_id(purpose)
        if bool(self._purposes.functions.exists(pid).call()):
            raise _refused(
                "PurposeAlreadyDefined", f"purpose {purpose} is already defined", purposeId=pid
            )
        return ChainWrite(
            "purposes.define", PURPOSES, "definePurpose", [pid, notice_hash, basis.ordinal], actor
        )

    def update_notice(self, actor: str, purpose: str, notice_hash: str) -> ChainWrite:
        """Publish a new notice version; consent given to the old version stops counting."""
        self._access.require_org_admin(actor)
        pid = self._known_purpose(purpose)
        return ChainWrite(
            "purposes.update_notice", PURPOSES, "updateNotice", [pid, notice_hash], actor
        )

    def share_purpose(self, actor: str, purpose: str, org_id: int) -> ChainWrite:
        """Let organisation `org_id` use the purpose (the controller's ORG_ADMIN)."""
        self._access.require_org_admin(actor)
        pid = self._known_purpose(purpose)
        return ChainWrite("purposes.share", PURPOSES, "sharePurpose", [pid, org_id], actor)

    def unshare_purpose(self, actor: str, purpose: str, org_id: int) -> ChainWrite:
        """Stop letting organisation `org_id` use the purpose (the controller's ORG_ADMIN)."""
        self._access.require_org_admin(actor)
        pid = self._known_purpose(purpose)
        return ChainWrite("purposes.unshare", PURPOSES, "unsharePurpose", [pid, org_id], actor)

    def retire_purpose(self, actor: str, purpose: str) -> ChainWrite:
        """Retire the purpose for good: no read under it is allowed any more."""
        self._access.require_org_admin(actor)
        pid = self._known_purpose(purpose)
        return ChainWrite("purposes.retire", PURPOSES, "retirePurpose", [pid], actor)

    def purposes(self) -> list[dict[str, Any]]:
        return [
            {
                "purpose_id": p.purpose_id,
                "controller_org": p.controller_org,
                "version": p.version,
                "notice_hash": p.notice_hash,
                "lawful_basis": p.basis,
                "active": p.active,
            }
            for p in self._read_model.purposes()
        ]

    def _known_purpose(self, purpose: str) -> str:
        pid = purpose_id(purpose)
        if not bool(self._purposes.functions.exists(pid).call()):
            raise _refused("UnknownPurpose", f"purpose {purpose} is not registered", purposeId=pid)
        return pid

    # --- signed changes -------------------------------------------------------------------

    def typed_data(
        self, customer_id: str, purpose: str, org_id: int, granted: bool, expires_at: int
    ) -> dict[str, Any]:
        """The EIP-712 typed data (eth_signTypedData_v4) the customer's wallet signs: the current
        notice version and nonce, and a deadline SIGNATURE_TTL_SECONDS after the latest block
        (never beyond the ledger's `maxSignatureLifetime`)."""
        pid = self._known_purpose(purpose)
        self._wallet_of(customer_id)
        version, _active = self._purposes.functions.purposeStatus(pid).call()
        nonce = int(self._ledger.functions.nonces(customer_id).call())
        lifetime = min(self._signature_ttl, self._max_signature_lifetime())
        deadline = self._chain_time() + lifetime
        change = SignedChange(
            customer_id, pid, int(version), org_id, granted, expires_at, nonce, deadline, ""
        )
        return self._typed(change)

    def _max_signature_lifetime(self) -> int:
        """The ledger's `maxSignatureLifetime` (an immutable: asked once)."""
        if self._max_lifetime is None:
            self._max_lifetime = int(self._ledger.functions.maxSignatureLifetime().call())
        return self._max_lifetime

    def _chain_time(self) -> int:
        """The latest block's timestamp: the next block's is at least this."""
        return int(self._contracts.chain.w3.eth.get_block("latest")["timestamp"])

    def relay(self, actor: str, changes: Sequence[SignedChange]) -> ChainWrite:
        """Refuse what the contract is certain to refuse (`_check`), then queue the changes in
        one transaction; the contract decides the rest.

        What the checks look up (each purpose's status, each customer's registration, wallet
        and nonce, the latest block's time) is asked of the chain in one JSON-RPC batch for the
        whole request, and the signatures are checked without eth-account's typed-data parser
        (`chain.eip712`): a relayer's batch of a few hundred changes is checked in milliseconds.
        """
        if not self._read_model.has_role(Role.RELAYER.value, actor):
            raise PermissionDeniedError(
                f"account {actor} is not a RELAYER of an active organisation",
                required_role=Role.RELAYER.value,
            )
        if not changes:
            raise DomainError("give at least one signed change")
        purposes = list(dict.fromkeys(change.purpose_id for change in changes))
        customers = list(dict.fromkeys(change.customer_id for change in changes))
        registry = self._contracts[REGISTRY]
        answers = call_batch(
            self._contracts.chain.w3,
            [
                *((self._purposes, "purposeStatus", (_raw32(pid),)) for pid in purposes),
                *((registry, "customer", (_raw32(cid),)) for cid in customers),
                *((self._ledger, "nonces", (_raw32(cid),)) for cid in customers),
            ],
        )
        n, m = len(purposes), len(customers)
        # (current version, active); version 0: never defined.
        purpose_state = {
            pid: (int(version), bool(active))
            for pid, (version, active) in zip(purposes, answers[:n], strict=True)
        }
        customer_state = dict(zip(customers, answers[n : n + m], strict=True))
        used_below = {
            cid: int(nonce[0]) for cid, nonce in zip(customers, answers[n + m :], strict=True)
        }
        now = self._chain_time()
        for change in changes:
            self._check(
                change,
                used_below[change.customer_id],
                purpose_state[change.purpose_id],
                customer_state[change.customer_id],
                now,
            )
        if len(changes) == 1:
            change = changes[0]
            return ChainWrite(
                "consents.relay",
                LEDGER,
                "setConsentBySig",
                [change.as_tuple(), change.signature],
                actor,
            )
        return ChainWrite(
            "consents.relay_batch",
            LEDGER,
            "setConsentsBySig",
            [[c.as_tuple() for c in changes], [c.signature for c in changes]],
            actor,
        )

    def _check(
        self,
        change: SignedChange,
        current_nonce: int,
        purpose: tuple[int, bool],
        customer: tuple[Any, ...],
        now: int,
    ) -> None:
        """Refuse `change` only where the ConsentLedger is certain to refuse it, whenever it is
        mined, given the purpose's (current version, active), the customer's registry record, the
        customer's current nonce and the latest block's time `now`.

        Each check below rests on state that can only move one way (block time, nonces and
        notice versions only grow; erasure and retirement are for good), so it is a strict
        subset of the contract's rules. What could still change in the change's favour before it
        is mined (an unknown customer, purpose or organisation, a suspended organisation, a nonce
        ahead of the current one, a deadline further ahead than `maxSignatureLifetime` of a block
        still to come) is left to the contract. A revocation is never refused for its purpose's
        state or notice version: withdrawing must always be possible.
        """
        if change.deadline < now:
            raise _refused(
                "DeadlineExpired", "the signature's deadline has passed", deadline=change.deadline
            )
        status = int(customer[0])
        if status == _CUSTOMER_ERASED:
            raise _refused(
                "CustomerIsErased", "the customer was erased", customerId=change.customer_id
            )
        if change.nonce < current_nonce:
            raise _refused(
                "InvalidNonce",
                f"nonce {change.nonce} is used; the customer's next is {current_nonce}",
                customerId=change.customer_id,
                expected=current_nonce,
                given=change.nonce,
            )
        version, active = purpose
        if change.granted and version != 0:
            if not active:
                raise _refused(
                    "PurposeIsRetired", "the purpose is retired", purposeId=change.purpose_id
                )
            if change.purpose_version < version:
                raise _refused(
                    "NoticeVersionMismatch",
                    f"the grant was signed for notice version {change.purpose_version}; "
                    f"the purpose is at version {version}",
                    purposeId=change.purpose_id,
                    current=version,
                    signed=change.purpose_version,
                )
        if not change.granted and change.expires_at != 0:
            raise _refused(
                "ExpiryOnRevocation", "a revocation has no expiry", expiresAt=change.expires_at
            )
        if change.granted and change.expires_at != 0 and change.expires_at <= now:
            raise _refused("ExpiryInPast", "the expiry is in the past", expiresAt=change.expires_at)
        wallet = str(customer[2])
        if status == _CUSTOMER_ACTIVE and wallet != _ZERO_ADDRESS:
            self._check_signature(change, to_checksum_address(wallet))

    def _check_signature(self, change: SignedChange, wallet: str) -> None:
        """Refuse a signature that is not the registered wallet's (an EOA: a contract wallet's
        ERC-1271 answer is the contract's to ask)."""
        signer = recover_signer(self._change_digest(change), change.signature)
        if signer == wallet or self._contracts.chain.has_code(wallet):
            return
        raise _refused(
            "InvalidConsentSignature",
            "the change was not signed by the customer's registered wallet",
            customerId=change.customer_id,
            wallet=wallet,
        )

    def _change_digest(self, change: SignedChange) -> bytes:
        """The EIP-712 digest the wallet signed (what `_typed(change)` encodes)."""
        if self._hasher is None:
            domain = domain_separator(
                "ConsentLedger", "1", self._contracts.chain.chain_id, self._ledger.address
            )
            self._hasher = StructHasher("ConsentChange", CONSENT_CHANGE_FIELDS, domain)
        return self._hasher.digest(change.as_message())

    def _wallet_of(self, customer_id: str) -> str:
        return _wallet(
            customer_id, self._contracts[REGISTRY].functions.customer(customer_id).call()
        )

    def _typed(self, change: SignedChange) -> dict[str, Any]:
        return consent_change_typed_data(
            self._contracts.chain.chain_id, self._ledger.address, change.as_message()
        )

    # --- the customer's own transaction ---------------------------------------------------

    def broadcast_raw(self, raw: bytes) -> str:
        """Broadcast a customer's own signed transaction to the ConsentLedger; return its hash.

        It is not ours to sign or to nonce, so it does not go through the outbox: it is checked
        (target, registered wallet, chain id) and passed to the node as it is.
        """
        try:
            tx = decode_raw_transaction(raw)
        except MalformedTransactionError as exc:
            raise DomainError(str(exc), field="raw") from exc
        chain_id = self._contracts.chain.chain_id
        if tx.chain_id is not None and tx.chain_id != chain_id:
            raise DomainError(f"the transaction is for chain {tx.chain_id}, this is {chain_id}")
        if tx.to is None or tx.to != self._ledger.address:
            raise DomainError(
                "the transaction must call the ConsentLedger", ledger=self._ledger.address
            )
        customer = self._contracts[REGISTRY].functions.customerOfWallet(tx.sender).call()
        if bytes(customer) == b"\0" * 32:
            raise PermissionDeniedError(f"{tx.sender} is not a registered customer wallet")
        try:
            function, _args = self._ledger.decode_function_input(tx.data)
        except ValueError as exc:
            raise DomainError("the transaction does not call a ConsentLedger function") from exc
        if function.fn_name != "setConsent":
            raise DomainError("a customer's own transaction may only call setConsent")
        self._contracts.chain.w3.eth.send_raw_transaction(raw)
        return tx.tx_hash

    # --- reads ----------------------------------------------------------------------------

    def check_locally(self, customer_id: str, purpose: str, org_id: int) -> dict[str, Any] | None:
        """`check` from the read model on a connection of the calling thread's own, when the
        database is a SQLite file (a few dozen microseconds, made on the event loop); None for a
        server database, whose reads belong in the thread pool (call `check` there)."""
        local = self._read_model.local()
        if local is None:
            return None
        return _decision_json(local.consent(customer_id, purpose_id(purpose), org_id))

    def check(
        self, customer_id: str, purpose: str, org_id: int, *, consistency: str = "read_model"
    ) -> dict[str, Any]:
        """Whether the customer consents now; from the read model, or the contract if asked."""
        pid = purpose_id(purpose)
        if consistency == "chain":
            block = int(self._contracts.chain.w3.eth.block_number)
            granted = bool(
                self._ledger.functions.hasConsent(customer_id, pid, org_id).call(
                    block_identifier=block
                )
            )
            stored = self._ledger.functions.consent(customer_id, pid, org_id).call(
                block_identifier=block
            )
            expires = int(stored[3]) if len(stored) > 3 else 0
            return {
                "granted": granted,
                "expires_at": _iso(expires) if expires else None,
                "as_of_block": block,
                "consistency": "chain",
            }
        return _decision_json(self._read_model.consent(customer_id, pid, org_id))

    def may_process(
        self, customer_id: str, purpose: str, org_id: int, *, consistency: str = "read_model"
    ) -> dict[str, Any]:
        """Whether `org_id` may process the customer's data under the purpose now: the read
        model's answer, or the contract's `mayProcess` with consistency="chain"."""
        pid = purpose_id(purpose)
        if consistency == "chain":
            block = int(self._contracts.chain.w3.eth.block_number)
            ordinal = int(
                self._ledger.functions.mayProcess(customer_id, pid, org_id).call(
                    block_identifier=block
                )
            )
            answer = PROCESSING_ANSWERS[ordinal]
            return {"allowed": answer == "allowed", "answer": answer, "as_of_block": block}
        decision = self._read_model.may_process(customer_id, pid, org_id)
        return {
            "allowed": decision.allowed,
            "answer": decision.answer,
            "as_of_block": decision.as_of_block,
        }

    def require_consent(self, customer_id: str, purpose: str, org_id: int) -> None:
        """Refuse a use of personal data the processing rule does not allow (`mayProcess`): see
        `processing.require_processing` for the problem types."""
        decision = self._read_model.may_process(customer_id, purpose_id(purpose), org_id)
        require_processing(decision, purpose)

    def _visible_history(self, reader: ConsentReader, customer_id: str) -> list[ConsentChangeView]:
        """The customer's consent changes that concern the reader's organisation (see
        `consent_access`), after checking the reader's role."""
        authorise(self._read_model, reader, HISTORY_ROLES)
        controllers = {p.purpose_id: p.controller_org for p in self._read_model.purposes()}
        return [
            change
            for change in self._read_model.consent_history(customer_id)
            if concerns(reader, change.org_id, controllers.get(change.purpose_id))
        ]

    def history(self, reader: ConsentReader, customer_id: str) -> dict[str, Any]:
        """Current consents and every change, with where on the chain each one is."""
        return self._history(customer_id, self._visible_history(reader, customer_id))

    def own_history(self, customer_id: str) -> dict[str, Any]:
        """`history` for the customer themself (the portal's session): all of their consents."""
        return self._history(customer_id, self._read_model.consent_history(customer_id))

    def _history(self, customer_id: str, changes: list[ConsentChangeView]) -> dict[str, Any]:
        current: dict[tuple[str, int], ConsentChangeView] = {}
        for change in changes:
            current[(change.purpose_id, change.org_id)] = change
        return {
            "customer_id": customer_id,
            "as_of_block": self._read_model.as_of_block(),
            "current": [
                {
                    "purpose_id": c.purpose_id,
                    "org_id": c.org_id,
                    **self.check(customer_id, c.purpose_id, c.org_id),
                    "receipt_id": c.receipt_hash,
                }
                for c in current.values()
            ],
            "history": [_change_json(c) for c in changes],
        }

    def receipt(self, reader: ConsentReader, customer_id: str, receipt_id: str) -> dict[str, Any]:
        """A consent receipt with the fields of ISO/IEC TS 27560, and the event that proves it."""
        return self._receipt(customer_id, receipt_id, self._visible_history(reader, customer_id))

    def own_receipt(self, customer_id: str, receipt_id: str) -> dict[str, Any]:
        """`receipt` for the customer themself (the portal's session)."""
        return self._receipt(
            customer_id, receipt_id, list(self._read_model.consent_history(customer_id))
        )

    def _receipt(
        self, customer_id: str, receipt_id: str, changes: list[ConsentChangeView]
    ) -> dict[str, Any]:
        match = next((c for c in changes if c.receipt_hash == receipt_id.lower()), None)
        if match is None:
            raise NotFoundError(f"no consent receipt {receipt_id} for customer {customer_id}")
        latest = [
            c for c in changes if (c.purpose_id, c.org_id) == (match.purpose_id, match.org_id)
        ][-1]
        purpose = self._read_model.purpose(match.purpose_id)
        if latest is not match:
            state = "superseded"
        elif not match.granted:
            state = "withdrawn"
        else:
            decision = self._read_model.consent(customer_id, match.purpose_id, match.org_id)
            state = "active" if decision.granted else (decision.reason or "inactive")
        how = (
            "EIP-712 signature by the customer's registered wallet, submitted by a relayer"
            if match.method == "signature"
            else "transaction sent by the customer's registered wallet"
        )
        return {
            "schema_version": RECEIPT_SCHEMA_VERSION,
            "record_id": match.receipt_hash,
            "data_subject": {"id": customer_id, "id_type": "pseudonymous customer id"},
            "controller": {"organisation_id": purpose.controller_org if purpose else None},
            "processor": {"organisation_id": match.org_id},
            "purpose": {"id": match.purpose_id, "notice_version": match.purpose_version},
            "lawful_basis": purpose.basis if purpose else LawfulBasis.CONSENT.value,
            "notice": {
                "hash": purpose.notice_hash if purpose else None,
                "version": match.purpose_version,
            },
            "event": {
                "type": "given" if match.granted else "withdrawn",
                "time": match.changed_at.isoformat(),
                "how_expressed": how,
                "duration": (
                    {"until": match.expires_at.isoformat()} if match.expires_at else {"until": None}
                ),
                "state": state,
            },
            "proof": {
                "chain_id": self._contracts.chain.chain_id,
                "contract": self._ledger.address,
                "event": "ConsentChanged",
                "tx_hash": match.tx_hash,
                "block_number": match.block_number,
                "log_index": match.log_index,
                "nonce": match.nonce,
                "submitter": match.submitter,
            },
        }

    def audience(self, reader: ConsentReader, purpose: str, org_id: int) -> dict[str, Any]:
        """The customers who may be contacted for `purpose` by `org_id` now (its MARKETERs)."""
        authorise_audience(self._read_model, reader, org_id)
        pid = purpose_id(purpose)
        return {
            "purpose_id": pid,
            "org_id": org_id,
            "as_of_block": self._read_model.as_of_block(),
            "customer_ids": self._read_model.audience(pid, org_id),
        }


def _decision_json(decision: ConsentDecision) -> dict[str, Any]:
    return {
        "granted": decision.granted,
        "expires_at": decision.expires_at.isoformat() if decision.expires_at else None,
        "as_of_block": decision.as_of_block,
        "reason": decision.reason,
        "consistency": "read_model",
    }


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _change_json(change: ConsentChangeView) -> dict[str, Any]:
    return {
        "purpose_id": change.purpose_id,
        "org_id": change.org_id,
        "granted": change.granted,
        "purpose_version": change.purpose_version,
        "expires_at": change.expires_at.isoformat() if change.expires_at else None,
        "nonce": change.nonce,
        "receipt_id": change.receipt_hash,
        "how_expressed": change.method,
        "submitter": change.submitter,
        "block_number": change.block_number,
        "tx_hash": change.tx_hash,
        "log_index": change.log_index,
        "time": change.changed_at.isoformat(),
    }
