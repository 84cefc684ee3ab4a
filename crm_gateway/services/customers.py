"""Customers: personal data sealed in this organisation's vault, a pseudonymous identity on-chain.

Every operation here checks the caller's on-chain role, writes its access-log entry (allowed or
refused) and keeps personal data out of the chain, the logs and every column but the sealed one.
A write commits its off-chain part and its outbox row in one database transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eth_utils.address import to_checksum_address
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from web3.contract import Contract

from crm_gateway.chain.calls import call_many
from crm_gateway.chain.contracts import Contracts
from crm_gateway.customers.profile import CustomerProfile, ProfilePatch
from crm_gateway.pipeline.outbox import ChainWrite
from crm_gateway.services.access import AccessService, Role
from crm_gateway.services.errors import (
    ConflictError,
    DomainError,
    NotFoundError,
    PermissionDeniedError,
)
from crm_gateway.services.operations import OperationService, OperationView
from crm_gateway.services.policy import ConsentPolicy
from crm_gateway.store import customers as store
from crm_gateway.store.models import (
    AccessAction,
    AccessDecision,
    BlindIndexKind,
    CustomerRecord,
    CustomerStatus,
)
from crm_gateway.vault.blind_index import BlindIndexer
from crm_gateway.vault.commitment import canonical_json
from crm_gateway.vault.envelope import TamperedRecordError
from crm_gateway.vault.keys import KeyProvider, KeyProviderError
from crm_gateway.vault.records import ProtectedProfile, from_hex32, protect, reveal, to_hex32

REGISTRY = "CustomerRegistry"
_CHAIN_ACTIVE = 1
_CHAIN_ERASED = 2
# Ids already erased on-chain are never reused; a person who comes back gets the next one.
_MAX_GENERATIONS = 64


class CustomerGoneError(DomainError):
    """The customer was erased (GDPR Art. 17); nothing about them can be read any more."""

    status, slug, title = 410, "customer-erased", "Customer erased"


class RoleLookup(Protocol):
    def has_role(self, role: str, account: str) -> bool: ...


@dataclass(frozen=True)
class _ChainRoles:
    access: AccessService

    def has_role(self, role: str, account: str) -> bool:
        return self.access.has_role(Role(role), account)


@dataclass(frozen=True)
class Actor:
    """Who is asking: the API key (or admin command) and the on-chain account behind it."""

    api_key_id: str | None
    org_id: int
    account: str


@dataclass(frozen=True)
class Registration:
    """A new customer ready to be written: its id, sealed profile and blind indexes."""

    customer_id: str
    protected: ProtectedProfile
    indexes: dict[BlindIndexKind, str | None]

    @property
    def commitment(self) -> str:
        """The commitment to publish on-chain, as `0x` + 64 hex digits."""
        return to_hex32(self.protected.commitment)


@dataclass(frozen=True)
class CustomerWrite:
    customer_id: str
    operation: OperationView
    created: bool


@dataclass(frozen=True)
class Verification:
    intact: bool
    version: int
    block: int
    reason: str | None


@dataclass(frozen=True)
class VerifyAllReport:
    checked: int
    block: int
    failures: list[tuple[str, str]]  # (customer id, reason), in customer id order


def _verdict(
    version: int, stored: str, recomputed: str | None, holding: Sequence[Any]
) -> str | None:
    """Why a record is not intact against the chain's `holding(id, org)`, or None."""
    chain_commitment, chain_version = "0x" + bytes(holding[0]).hex(), int(holding[1])
    if recomputed is None:
        return "the sealed record or its wrapped key does not authenticate"
    if recomputed != stored:
        return "the record does not match its stored commitment"
    if chain_version != version:
        return f"the chain holds version {chain_version}, the vault version {version}"
    if chain_commitment != recomputed:
        return "the record does not match the commitment on-chain"
    return None


class CustomerService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        contracts: Contracts,
        operations: OperationService,
        vault: KeyProvider,
        indexer: BlindIndexer,
        gateway_org_id: int,
        phone_region: str,
        signature_ttl_seconds: int,
        consent: ConsentPolicy,
        roles: RoleLookup | None = None,
    ) -> None:
        # Required: the API's is the ConsentService (the processing rule); an admin tool that
        # returns no personal data passes a named `policy.AllowAll`.
        self._consent = consent
        self._sessions = sessions
        self._contracts = contracts
        self._operations = operations
        self._access = AccessService(contracts)
        # Role checks on the request path come from the read model when there is one (no
        # chain round trip); admin tools without an indexer ask the contract.
        self._roles: RoleLookup = roles or _ChainRoles(self._access)
        self._vault = vault
        self._indexer = indexer
        self._org_id = gateway_org_id
        self._phone_region = phone_region
        self._signature_ttl = signature_ttl_seconds

    @property
    def _registry(self) -> Contract:
        return self._contracts[REGISTRY]

    # --- checks ---------------------------------------------------------------------------

    def _authorise(
        self,
        actor: Actor,
        action: AccessAction,
        roles: tuple[Role, ...],
        customer_id: str | None,
        purpose: str | None = None,
    ) -> None:
        """Refuse (and log the refusal) unless the actor may do `action` here."""
        reason = None
        if actor.org_id != self._org_id:
            reason = f"this gateway holds the customers of organisation {self._org_id} only"
        elif not any(self._roles.has_role(role.value, actor.account) for role in roles):
            reason = f"requires one of {', '.join(r.value for r in roles)}"
        if reason is not None:
            self._log(actor, action, AccessDecision.REFUSED, customer_id, purpose, reason)
            raise PermissionDeniedError(reason, required_roles=[r.value for r in roles])

    def _log(
        self,
        actor: Actor,
        action: AccessAction,
        decision: AccessDecision,
        customer_id: str | None,
        purpose: str | None,
        reason: str | None = None,
        session: Session | None = None,
    ) -> None:
        def write(target: Session) -> None:
            store.log_access(
                target,
                action=action,
                decision=decision,
                customer_id=customer_id,
                purpose=purpose,
                reason=reason,
                api_key_id=actor.api_key_id,
                org_id=actor.org_id,
                account=actor.account,
            )

        if session is not None:
            write(session)
            return
        with self._sessions() as own:
            write(own)
            own.commit()

    def _parse(self, parse: Callable[..., Any], data: Any) -> Any:
        return parse(data, phone_region=self._phone_region)

    # --- writes ---------------------------------------------------------------------------

    def create(self, actor: Actor, data: Any, *, idempotency_key: str | None) -> CustomerWrite:
        """Seal a new customer's profile and register (or join) its on-chain identity."""
        self.authorise_create(actor)
        profile: CustomerProfile = self._parse(CustomerProfile.parse, data)
        indexes = self.blind_indexes(profile)
        with self._sessions() as session:
            conflicts = store.find_conflicts(session, indexes)
            if conflicts and idempotency_key is None:
                kind, existing = next(iter(conflicts.items()))
                raise ConflictError(
                    f"a customer with this {kind.value} already exists",
                    customer_id=existing,
                )
        registration = self.prepare_registration(profile, indexes=indexes)
        hex_id = registration.customer_id

        def off_chain(session: Session) -> None:
            _refuse_conflicts(session, indexes, "a customer with this {} already exists")
            with _unique_or_conflict(session, indexes, "a customer with this {} already exists"):
                self.write_registrations(session, actor, [registration])

        write = ChainWrite(
            "customers.register",
            REGISTRY,
            "register",
            [hex_id, registration.commitment],
            actor.account,
        )
        operation, created = self._operations.submit(
            write,
            api_key_id=actor.api_key_id,
            idempotency_key=idempotency_key,
            payload=self._indexer.request_digest(profile.canonical_json()),
            off_chain=off_chain,
        )
        if not created:
            hex_id = self._operation_customer(operation)
        return CustomerWrite(hex_id, operation, created)

    # --- registration steps (shared by `create` and the CSV importer) ------------------------

    def authorise_create(self, actor: Actor) -> None:
        """Refuse (and log it) unless `actor` may register customers of this organisation."""
        self._authorise(actor, AccessAction.CREATE, (Role.DATA_STEWARD,), None)

    def blind_indexes(self, profile: CustomerProfile) -> dict[BlindIndexKind, str | None]:
        """The blind indexes of a profile's e-mail and phone (None: no phone)."""
        return {
            BlindIndexKind.EMAIL: self._indexer.email(profile.email_index),
            BlindIndexKind.PHONE: self._indexer.phone(profile.phone) if profile.phone else None,
        }

    def prepare_registration(
        self,
        profile: CustomerProfile,
        *,
        indexes: dict[BlindIndexKind, str | None] | None = None,
        customer_id: bytes | None = None,
    ) -> Registration:
        """Choose the customer id (unless given: see `free_customer_ids`) and seal version 1."""
        raw_id = (
            customer_id
            if customer_id is not None
            else self.free_customer_ids([profile.email_index])[0]
        )
        protected = protect(
            profile.canonical_json(),
            customer_id=raw_id,
            version=1,
            org_id=self._org_id,
            provider=self._vault,
        )
        return Registration(
            customer_id=to_hex32(raw_id),
            protected=protected,
            indexes=indexes if indexes is not None else self.blind_indexes(profile),
        )

    def write_registrations(
        self,
        session: Session,
        actor: Actor,
        registrations: Sequence[Registration],
        *,
        purpose: str | None = None,
    ) -> None:
        """Insert the records, their blind indexes and a CREATE access-log entry for each.

        Runs inside the caller's transaction (`OperationService.submit(off_chain=...)`), which
        commits them with the outbox row of the chain write; `purpose` goes into each log entry
        (the CSV importer's tag). A taken id or blind index raises `IntegrityError`, an erased
        record revived by someone else meanwhile `store.RecordTakenError`.
        """
        rows = [
            store.NewRecord(
                customer_id=registration.customer_id,
                sealed=registration.protected.sealed,
                commitment=registration.commitment,
                indexes=registration.indexes,
            )
            for registration in registrations
        ]
        # A person who comes back after this organisation erased them, while others still hold
        # their identity, gets the same id again (see `free_customer_ids`): their row is revived.
        returning = store.erased_record_ids(session, [row.customer_id for row in rows])
        store.revive_records(
            session, [row for row in rows if row.customer_id in returning], org_id=self._org_id
        )
        store.insert_records(
            session, [row for row in rows if row.customer_id not in returning], org_id=self._org_id
        )
        store.log_accesses(
            session,
            [registration.customer_id for registration in registrations],
            action=AccessAction.CREATE,
            decision=AccessDecision.ALLOWED,
            purpose=purpose,
            api_key_id=actor.api_key_id,
            org_id=actor.org_id,
            account=actor.account,
        )

    def free_customer_ids(self, email_indexes: Sequence[str]) -> list[bytes]:
        """For each e-mail (index form), the id to register that person under.

        The first generation (0 unless the person was erased) whose id is either unused here
        and not erased on-chain (new, or joining other organisations), or erased here but still
        active on-chain: the person left this organisation and came back while others kept
        them, so this organisation joins their one identity again rather than making a second
        one (`write_registrations` revives the erased row). One database query and one batch
        of chain calls per generation, however many e-mails.
        """
        chosen: list[bytes | None] = [None] * len(email_indexes)
        todo = list(range(len(email_indexes)))
        for generation in range(_MAX_GENERATIONS):
            if not todo:
                break
            candidates = {i: self._indexer.customer_id(email_indexes[i], generation) for i in todo}
            ids = [to_hex32(candidate) for candidate in candidates.values()]
            with self._sessions() as session:
                used = store.existing_record_ids(session, ids)
                erased_here = store.erased_record_ids(session, ids)
            open_ = [i for i in todo if to_hex32(candidates[i]) not in used - erased_here]
            statuses = call_many(
                self._contracts.chain.w3,
                self._registry,
                "customer",
                [(candidates[i],) for i in open_],
            )
            for i, state in zip(open_, statuses, strict=True):
                status = int(state[0])
                if to_hex32(candidates[i]) in erased_here:
                    if status == _CHAIN_ACTIVE:
                        chosen[i] = candidates[i]
                elif status != _CHAIN_ERASED:
                    chosen[i] = candidates[i]
            todo = [i for i in todo if chosen[i] is None]
        if todo:
            raise ConflictError("this person was erased too many times to be registered again")
        return [candidate for candidate in chosen if candidate is not None]

    def update(
        self, actor: Actor, customer_id: str, data: Any, *, idempotency_key: str | None
    ) -> CustomerWrite:
        """Store a new version of the profile and commit to it on-chain."""
        self._authorise(actor, AccessAction.UPDATE, (Role.DATA_STEWARD,), customer_id)
        patch: ProfilePatch = self._parse(ProfilePatch.parse, data)
        with self._sessions() as session:
            record = self._active(session, customer_id)
            current = self._open(record)
            version = record.version
        updated = patch.apply_to(current)
        indexes = self.blind_indexes(updated)
        raw_id = from_hex32(customer_id)
        protected = protect(
            updated.canonical_json(),
            customer_id=raw_id,
            version=version + 1,
            org_id=self._org_id,
            provider=self._vault,
        )

        def off_chain(session: Session) -> None:
            message = "another customer has this {}"
            _refuse_conflicts(session, indexes, message, exclude=customer_id)
            record = store.get_active_record(session, customer_id, for_update=True)
            store.update_record(
                session,
                record,
                version=version + 1,
                sealed=protected.sealed,
                commitment=to_hex32(protected.commitment),
            )
            with _unique_or_conflict(session, indexes, message, exclude=customer_id):
                store.set_blind_indexes(session, customer_id, indexes)
            self._log(
                actor,
                AccessAction.UPDATE,
                AccessDecision.ALLOWED,
                customer_id,
                None,
                session=session,
            )

        write = ChainWrite(
            "customers.update",
            REGISTRY,
            "updateCommitment",
            [customer_id, to_hex32(protected.commitment), version],
            actor.account,
        )
        try:
            operation, created = self._operations.submit(
                write,
                api_key_id=actor.api_key_id,
                idempotency_key=idempotency_key,
                payload={
                    "customer_id": customer_id,
                    "patch": self._indexer.request_digest(
                        canonical_json(patch.model_dump(mode="json", exclude_unset=True))
                    ),
                },
                off_chain=off_chain,
            )
        except store.StaleVersionError as exc:
            raise ConflictError(f"customer {customer_id} changed meanwhile; retry") from exc
        return CustomerWrite(customer_id, operation, created)

    def erase(
        self, actor: Actor, customer_id: str, *, idempotency_key: str | None
    ) -> CustomerWrite:
        """Crypto-shred the record and its blind indexes and record the erasure on-chain."""
        self._authorise(actor, AccessAction.ERASE, (Role.DATA_STEWARD,), customer_id)
        with self._sessions() as session:
            record = store.get_record(session, customer_id)
            if record is None or record.org_id != self._org_id:
                raise NotFoundError(f"customer {customer_id} does not exist")

        def off_chain(session: Session) -> None:
            store.erase_record(session, customer_id)
            self._log(
                actor,
                AccessAction.ERASE,
                AccessDecision.ALLOWED,
                customer_id,
                None,
                session=session,
            )

        write = ChainWrite("customers.erase", REGISTRY, "erase", [customer_id], actor.account)
        operation, created = self._operations.submit(
            write,
            api_key_id=actor.api_key_id,
            idempotency_key=idempotency_key,
            payload={"erase": customer_id},
            off_chain=off_chain,
        )
        return CustomerWrite(customer_id, operation, created)

    # --- reads ----------------------------------------------------------------------------

    def read(self, actor: Actor, customer_id: str, purpose: str) -> dict[str, Any]:
        """The decrypted profile, for DATA_STEWARD and AGENT keys; every attempt is logged."""
        self._authorise(
            actor, AccessAction.READ, (Role.DATA_STEWARD, Role.AGENT), customer_id, purpose
        )
        try:
            self._consent.require_consent(customer_id, purpose, self._org_id)
        except DomainError as refusal:
            self._log(
                actor,
                AccessAction.READ,
                AccessDecision.REFUSED,
                customer_id,
                purpose,
                refusal.detail,
            )
            raise
        with self._sessions() as session:
            record = self._active(session, customer_id, actor=actor, purpose=purpose)
            profile = self._open(record)
            self._log(
                actor,
                AccessAction.READ,
                AccessDecision.ALLOWED,
                customer_id,
                purpose,
                session=session,
            )
            session.commit()
            return {
                "customer_id": customer_id,
                "version": record.version,
                "profile": profile.model_dump(mode="json", exclude_none=True),
            }

    def lookup(self, actor: Actor, *, email: str | None, phone: str | None) -> list[str]:
        """Customer ids matching an e-mail or a phone, found through the blind index only."""
        self._authorise(actor, AccessAction.LOOKUP, (Role.DATA_STEWARD, Role.AGENT), None)
        from crm_gateway.customers.profile import email_index_form, normalise_phone

        found: list[str] = []
        with self._sessions() as session:
            if email is not None:
                value = self._indexer.email(email_index_form(email))
                owner = store.find_by_blind_index(session, BlindIndexKind.EMAIL, value)
                found += [owner] if owner else []
            if phone is not None:
                value = self._indexer.phone(normalise_phone(phone, self._phone_region))
                owner = store.find_by_blind_index(session, BlindIndexKind.PHONE, value)
                found += [owner] if owner and owner not in found else []
            for customer_id in found:
                self._log(
                    actor,
                    AccessAction.LOOKUP,
                    AccessDecision.ALLOWED,
                    customer_id,
                    None,
                    session=session,
                )
            session.commit()
        return found

    def verify(self, actor: Actor, customer_id: str) -> Verification:
        """Recompute the commitment from the vault and compare it with the chain's."""
        self._authorise(
            actor, AccessAction.VERIFY, (Role.DATA_STEWARD, Role.AGENT, Role.AUDITOR), customer_id
        )
        with self._sessions() as session:
            record = self._active(session, customer_id)
            version, stored = record.version, record.commitment
            recomputed = self._recompute(record)
            self._log(
                actor,
                AccessAction.VERIFY,
                AccessDecision.ALLOWED,
                customer_id,
                None,
                session=session,
            )
            session.commit()
        block = int(self._contracts.chain.w3.eth.block_number)
        holding = self._registry.functions.holding(from_hex32(customer_id), self._org_id).call(
            block_identifier=block
        )
        reason = _verdict(version, stored, recomputed, holding)
        return Verification(intact=reason is None, version=version, block=block, reason=reason)

    def verify_all(
        self,
        actor: Actor,
        *,
        page: int = 500,
        on_progress: Callable[[int], None] | None = None,
    ) -> VerifyAllReport:
        """Every active record of this organisation against its commitment on-chain, as `verify`
        checks one (for admin tools: no role check). The chain is read at one block, a page of
        holdings per batch of calls; each decryption is logged, a page per INSERT."""
        block = int(self._contracts.chain.w3.eth.block_number)
        failures: list[tuple[str, str]] = []
        checked = 0
        after: str | None = None
        while True:
            with self._sessions() as session:
                records = store.active_records(session, self._org_id, after=after, limit=page)
                if not records:
                    break
                found = [
                    (r.customer_id, r.version, r.commitment, self._recompute(r)) for r in records
                ]
                store.log_accesses(
                    session,
                    [customer_id for customer_id, *_rest in found],
                    action=AccessAction.VERIFY,
                    decision=AccessDecision.ALLOWED,
                    api_key_id=actor.api_key_id,
                    org_id=actor.org_id,
                    account=actor.account,
                )
                session.commit()
            holdings = call_many(
                self._contracts.chain.w3,
                self._registry,
                "holding",
                [(from_hex32(customer_id), self._org_id) for customer_id, *_rest in found],
                block=block,
            )
            for (customer_id, version, stored, recomputed), (holding,) in zip(
                found, holdings, strict=True
            ):
                reason = _verdict(version, stored, recomputed, holding)
                if reason is not None:
                    failures.append((customer_id, reason))
            checked += len(found)
            after = found[-1][0]
            if on_progress is not None:
                on_progress(checked)
        return VerifyAllReport(checked=checked, block=block, failures=failures)

    def _recompute(self, record: CustomerRecord) -> str | None:
        """The commitment recomputed from the sealed record (None: it does not authenticate)."""
        try:
            revealed = reveal(
                store.sealed_of(record),
                customer_id=from_hex32(record.customer_id),
                version=record.version,
                org_id=record.org_id,
                provider=self._vault,
            )
        except (TamperedRecordError, KeyProviderError):
            return None
        return to_hex32(revealed.commitment)

    def export(self, actor: Actor, customer_id: str) -> dict[str, Any]:
        """Everything held about a customer, portable (GDPR Art. 15 and 20)."""
        self._authorise(actor, AccessAction.EXPORT, (Role.DATA_STEWARD,), customer_id, "export")
        return self._export(actor, customer_id)

    def own_export(self, customer_id: str, wallet: str) -> dict[str, Any]:
        """`export` for the customer themselves, signed in with their registered wallet (the
        portal checked it); logged with the wallet as the account."""
        return self._export(Actor(None, self._org_id, wallet), customer_id)

    def own_record(self, customer_id: str, wallet: str) -> dict[str, Any]:
        """The customer's own profile, for them (signed in with their wallet); logged."""
        actor = Actor(None, self._org_id, wallet)
        with self._sessions() as session:
            record = self._active(session, customer_id)
            profile = self._open(record)
            self._log(
                actor,
                AccessAction.READ,
                AccessDecision.ALLOWED,
                customer_id,
                "self",
                session=session,
            )
            session.commit()
        return {
            "version": record.version,
            "profile": profile.model_dump(mode="json", exclude_none=True),
        }

    def _export(self, actor: Actor, customer_id: str) -> dict[str, Any]:
        with self._sessions() as session:
            record = self._active(session, customer_id)
            profile = self._open(record)
            self._log(
                actor,
                AccessAction.EXPORT,
                AccessDecision.ALLOWED,
                customer_id,
                "export",
                session=session,
            )
            session.commit()
            log = [
                {
                    "at": entry.at.isoformat(),
                    "action": entry.action.value,
                    "purpose": entry.purpose,
                    "decision": entry.decision.value,
                    "organisation": entry.org_id,
                }
                for entry in store.access_log_for(session, customer_id)
            ]
        status, registered_at, wallet, _holders = self._registry.functions.customer(
            from_hex32(customer_id)
        ).call()
        zero = "0x" + "0" * 40
        return {
            "customer_id": customer_id,
            "controller_organisation": self._org_id,
            "version": record.version,
            "profile": profile.model_dump(mode="json", exclude_none=True),
            "created_at": record.created_at.isoformat(),
            "updated_at": record.updated_at.isoformat(),
            "on_chain": {
                "status": ["none", "active", "erased"][int(status)],
                "registered_at": int(registered_at),
                "wallet": None if wallet == zero else to_checksum_address(wallet),
                "holders": [
                    int(o)
                    for o in self._registry.functions.holdersOf(from_hex32(customer_id)).call()
                ],
                "commitment": record.commitment,
            },
            "access_log": log,
        }

    # --- for the wallet service (services/wallets.py) ---------------------------------------

    def authorise(
        self, actor: Actor, action: AccessAction, roles: tuple[Role, ...], customer_id: str
    ) -> None:
        """Refuse (and log it) unless `actor` holds one of `roles` in this gateway's organisation,
        and unless this organisation holds an active record of `customer_id`."""
        self._authorise(actor, action, roles, customer_id)
        with self._sessions() as session:
            self._active(session, customer_id)

    # --- helpers --------------------------------------------------------------------------

    def _active(
        self,
        session: Session,
        customer_id: str,
        *,
        actor: Actor | None = None,
        purpose: str | None = None,
    ) -> CustomerRecord:
        record = store.get_record(session, customer_id)
        if record is None or record.org_id != self._org_id:
            raise NotFoundError(f"customer {customer_id} does not exist")
        if record.status is CustomerStatus.ERASED:
            if actor is not None:
                self._log(
                    actor,
                    AccessAction.READ,
                    AccessDecision.REFUSED,
                    customer_id,
                    purpose,
                    "erased",
                    session=session,
                )
                session.commit()
            raise CustomerGoneError(f"customer {customer_id} was erased")
        return record

    def _open(self, record: CustomerRecord) -> CustomerProfile:
        revealed = reveal(
            store.sealed_of(record),
            customer_id=from_hex32(record.customer_id),
            version=record.version,
            org_id=record.org_id,
            provider=self._vault,
        )
        return CustomerProfile.from_canonical(revealed.canonical)

    @staticmethod
    def _operation_customer(operation: OperationView) -> str:
        return str(operation.args[0]) if operation.args else ""


def _refuse_conflicts(
    session: Session,
    indexes: dict[BlindIndexKind, str | None],
    message: str,
    *,
    exclude: str | None = None,
) -> None:
    """`ConflictError` naming the existing customer if another one holds one of `indexes`."""
    conflicts = store.find_conflicts(session, indexes, exclude=exclude)
    if conflicts:
        kind, existing = next(iter(conflicts.items()))
        raise ConflictError(message.format(kind.value), customer_id=existing)


@contextlib.contextmanager
def _unique_or_conflict(
    session: Session,
    indexes: dict[BlindIndexKind, str | None],
    message: str,
    *,
    exclude: str | None = None,
) -> Iterator[None]:
    """Run inserts in a savepoint; a unique violation from a concurrent writer becomes a 409.

    On PostgreSQL (READ COMMITTED) two requests for the same person can both pass the
    conflict check and race to insert; the loser's INSERT waits for the winner's commit and
    then fails with a unique violation. Rolling back to the savepoint keeps the transaction
    usable, and the winner's rows are visible to the next statement, so the answer names it.
    (SQLite serialises writers with BEGIN IMMEDIATE, so there the first check already sees it.)
    """
    try:
        with session.begin_nested():
            yield
    except (IntegrityError, store.RecordTakenError):
        _refuse_conflicts(session, indexes, message, exclude=exclude)
        raise  # not a duplicate person: a bug, answered as a 500
