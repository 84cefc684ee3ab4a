"""Hot-path queries answered from the read model, with no chain I/O.

Every answer is as current as `as_of_block()`: the cursor is read first, so the data a query
returns is at least that current (a later commit of the indexer may already be visible too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from sqlalchemy import Connection, Engine, and_, bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.indexer.loyalty_read_model import LoyaltyQueries
from crm_gateway.indexer.scanner import CURSOR_NAME
from crm_gateway.store.db import make_local_reader
from crm_gateway.store.models import (
    CustomerStatus,
    IndexerCursor,
    RmConsent,
    RmConsentChange,
    RmCustomer,
    RmCustomerHolder,
    RmMember,
    RmOrganization,
    RmPurpose,
    RmPurposeShare,
    RmRoleHolding,
    utcnow,
)

# The Consortium's roles (OrganizationRoles), by name; `DEFAULT_ADMIN_ROLE` is the zero hash.
ROLE_NAMES: tuple[str, ...] = (
    "CONSORTIUM_ADMIN",
    "ORG_ADMIN",
    "DATA_STEWARD",
    "AGENT",
    "MARKETER",
    "AUDITOR",
    "MERCHANT",
    "RELAYER",
)
_ROLE_IDS: dict[str, str] = {name: "0x" + keccak(text=name).hex() for name in ROLE_NAMES}
_ROLE_IDS["DEFAULT_ADMIN_ROLE"] = "0x" + "00" * 32
_ROLE_NAMES_BY_ID: dict[str, str] = {role_id: name for name, role_id in _ROLE_IDS.items()}


def role_id(role: str | bytes) -> str:
    """The bytes32 id of a role given by name ("DATA_STEWARD"), hex, or bytes, as lower-case hex."""
    if isinstance(role, bytes):
        return "0x" + role.hex()
    known = _ROLE_IDS.get(role.upper())
    if known is not None:
        return known
    if role.startswith("0x") and len(role) == 66:
        return role.lower()
    raise ValueError(f"unknown role {role!r}")


def role_name(role_id_hex: str) -> str:
    """The name of a role id, or the id itself when it is not one of the Consortium's roles."""
    return _ROLE_NAMES_BY_ID.get(role_id_hex.lower(), role_id_hex)


@lru_cache(maxsize=65_536)
def _checksum(address: str) -> str:
    return to_checksum_address(address)


@dataclass(frozen=True)
class RoleView:
    role: str  # the role's name when it is one of the Consortium's, else its bytes32 id
    role_id: str
    org_id: int | None
    active: bool  # in force: the account's organisation is active (or it has none)
    granted_block: int


@dataclass(frozen=True)
class OrganizationView:
    org_id: int
    name: str
    admin: str
    active: bool


@dataclass(frozen=True)
class HolderView:
    org_id: int
    version: int
    commitment: str
    updated_block: int


@dataclass(frozen=True)
class CustomerView:
    customer_id: str
    status: CustomerStatus
    wallet: str | None
    wallet_nonce: int
    registered_block: int
    updated_block: int
    holders: dict[int, HolderView]
    as_of_block: int | None


@dataclass(frozen=True)
class PurposeView:
    purpose_id: str
    controller_org: int
    version: int
    notice_hash: str
    basis: str  # consent, contract, legal_obligation or legitimate_interest
    active: bool
    updated_block: int
    updated_at: datetime


@dataclass(frozen=True)
class ConsentChangeView:
    """One ConsentChanged event: a row of a customer's consent history."""

    customer_id: str
    purpose_id: str
    org_id: int
    granted: bool
    purpose_version: int
    expires_at: datetime | None
    nonce: int
    receipt_hash: str
    method: str  # wallet_transaction or signature
    submitter: str
    block_number: int
    tx_hash: str
    log_index: int
    changed_at: datetime


@dataclass(frozen=True)
class ConsentDecision:
    """Whether a consent counts now, as `ConsentLedger.hasConsent` answers, and why not.

    `reason` is None when granted, else one of: `no_consent` (never given), `revoked` (at
    `block_number`), `expired` (at `expires_at`), `unknown_purpose`, `purpose_retired`,
    `notice_changed` (given to `purpose_version`, the purpose is at `current_purpose_version`).
    """

    customer_id: str
    purpose_id: str
    org_id: int
    granted: bool
    reason: str | None
    as_of_block: int | None
    purpose_version: int | None = None
    current_purpose_version: int | None = None
    expires_at: datetime | None = None
    changed_at: datetime | None = None
    block_number: int | None = None
    tx_hash: str | None = None
    receipt_hash: str | None = None


#: `PurposeRegistry.Processing`, by ordinal (append-only in the ABI): what `mayProcess` answers.
PROCESSING_ANSWERS: tuple[str, ...] = (
    "allowed",
    "unknown_purpose",
    "purpose_retired",
    "purpose_not_shared",
    "no_live_consent",
)


@dataclass(frozen=True)
class ProcessingDecision:
    """Whether organisation `org_id` may process the customer's data under the purpose now, as
    `ConsentLedger.mayProcess` answers: `answer` is one of `PROCESSING_ANSWERS`; `consent` is the
    consent decision when the purpose's basis is consent (None otherwise)."""

    customer_id: str
    purpose_id: str
    org_id: int
    answer: str
    basis: str | None
    consent: ConsentDecision | None
    as_of_block: int | None

    @property
    def allowed(self) -> bool:
        return self.answer == "allowed"


class ReadModel(LoyaltyQueries):
    """Queries over the `rm_*` tables; each opens one pooled connection and does no chain I/O.

    The loyalty queries (`balance`, `movements`, `settlement`) are `LoyaltyQueries`'."""

    def __init__(self, engine: Engine, *, local: bool = False) -> None:
        self.engine = engine
        self._local = local
        self._local_model: ReadModel | None = None

    def local(self) -> ReadModel | None:
        """The same read model for the calling thread alone, when its database is a SQLite file:
        reads on a connection of that thread's own that never waits for the pool (see
        `store.db.make_local_reader`); the gateway answers consent checks with it on the event
        loop, without a hand-off to the thread pool. None for a server database."""
        if self._local:
            return self
        if self._local_model is None:
            reader = make_local_reader(self.engine)
            if reader is None:
                return None
            self._local_model = ReadModel(reader, local=True)
        return self._local_model

    @classmethod
    def from_session_factory(cls, factory: sessionmaker[Session]) -> ReadModel:
        engine = factory.kw.get("bind")
        if not isinstance(engine, Engine):
            raise TypeError("the session factory is not bound to an engine")
        return cls(engine)

    @staticmethod
    def _as_of(connection: Connection) -> int | None:
        return connection.execute(
            select(IndexerCursor.block_number).where(IndexerCursor.name == CURSOR_NAME)
        ).scalar_one_or_none()

    def as_of_block(self) -> int | None:
        """The last block whose events the read model includes (None before the first scan)."""
        with self.engine.connect() as connection:
            return self._as_of(connection)

    # --- roles ------------------------------------------------------------------------------

    def has_role(self, role: str | bytes, account: str) -> bool:
        """`hasActiveRole(role, account)`: held and in force."""
        with self.engine.connect() as connection:
            active = connection.execute(
                select(RmRoleHolding.active).where(
                    RmRoleHolding.account == _checksum(account),
                    RmRoleHolding.role == role_id(role),
                )
            ).scalar_one_or_none()
        return bool(active)

    def roles_of(self, account: str) -> list[RoleView]:
        """Every role `account` holds (in force or not), by role name."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    RmRoleHolding.role,
                    RmRoleHolding.org_id,
                    RmRoleHolding.active,
                    RmRoleHolding.granted_block,
                ).where(RmRoleHolding.account == _checksum(account))
            ).all()
        views = [
            RoleView(role_name(r.role), r.role, r.org_id, r.active, r.granted_block) for r in rows
        ]
        return sorted(views, key=lambda v: v.role)

    def holders_of(self, role: str | bytes, *, org_id: int | None = None) -> list[str]:
        """The accounts holding `role` (in force or not), optionally in one organisation."""
        query = select(RmRoleHolding.account).where(RmRoleHolding.role == role_id(role))
        if org_id is not None:
            query = query.where(RmRoleHolding.org_id == org_id)
        with self.engine.connect() as connection:
            return sorted(connection.execute(query).scalars())

    def organization_of(self, account: str) -> int | None:
        """The organisation `account` belongs to (None for none)."""
        with self.engine.connect() as connection:
            return connection.execute(
                select(RmMember.org_id).where(RmMember.account == _checksum(account))
            ).scalar_one_or_none()

    def organizations(self) -> list[OrganizationView]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    RmOrganization.org_id,
                    RmOrganization.name,
                    RmOrganization.admin,
                    RmOrganization.active,
                ).order_by(RmOrganization.org_id)
            ).all()
        return [OrganizationView(r.org_id, r.name, r.admin, r.active) for r in rows]

    # --- customers --------------------------------------------------------------------------

    def customer(self, customer_id: str) -> CustomerView | None:
        """A customer id's state on the registry (None if it was never registered)."""
        key = customer_id.lower()
        with self.engine.connect() as connection:
            as_of = self._as_of(connection)
            row = connection.execute(
                select(RmCustomer).where(RmCustomer.customer_id == key)
            ).one_or_none()
            if row is None:
                return None
            holders = connection.execute(
                select(
                    RmCustomerHolder.org_id,
                    RmCustomerHolder.version,
                    RmCustomerHolder.commitment,
                    RmCustomerHolder.updated_block,
                ).where(RmCustomerHolder.customer_id == key)
            ).all()
        return CustomerView(
            customer_id=row.customer_id,
            status=row.status,
            wallet=row.wallet,
            wallet_nonce=row.wallet_nonce,
            registered_block=row.registered_block,
            updated_block=row.updated_block,
            holders={
                h.org_id: HolderView(h.org_id, h.version, h.commitment, h.updated_block)
                for h in holders
            },
            as_of_block=as_of,
        )

    def holding(self, customer_id: str, org_id: int) -> HolderView | None:
        """Organisation `org_id`'s holding of a customer (version, commitment), if it holds it."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(
                    RmCustomerHolder.org_id,
                    RmCustomerHolder.version,
                    RmCustomerHolder.commitment,
                    RmCustomerHolder.updated_block,
                ).where(
                    RmCustomerHolder.customer_id == customer_id.lower(),
                    RmCustomerHolder.org_id == org_id,
                )
            ).one_or_none()
        return None if row is None else HolderView(*row)

    def customer_of_wallet(self, wallet: str) -> str | None:
        """The customer id a wallet is linked to (None if it is not linked)."""
        with self.engine.connect() as connection:
            return connection.execute(
                select(RmCustomer.customer_id).where(RmCustomer.wallet == _checksum(wallet))
            ).scalar_one_or_none()

    # --- purposes and consents ----------------------------------------------------------------

    def purpose(self, purpose_id: str) -> PurposeView | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(RmPurpose).where(RmPurpose.purpose_id == purpose_id.lower())
            ).one_or_none()
        return None if row is None else PurposeView(**row._mapping)

    def purposes(self) -> list[PurposeView]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(RmPurpose).order_by(RmPurpose.purpose_id)).all()
        return [PurposeView(**row._mapping) for row in rows]

    def consent(
        self, customer_id: str, purpose_id: str, org_id: int, *, now: datetime | None = None
    ) -> ConsentDecision:
        """Whether `customer_id` consents to `purpose_id` for `org_id` at `now` (default: the
        current time): granted, not expired, given to the purpose's current notice version, and
        the purpose not retired, as the contract's `hasConsent`.

        The hottest read of the gateway: the cursor, the consent and its purpose come from one
        prepared statement (one round trip, one snapshot, no statement built per call)."""
        customer_id, purpose_id = customer_id.lower(), purpose_id.lower()
        params = {"customer_id": customer_id, "purpose_id": purpose_id, "org_id": org_id}
        row: Any
        with self.engine.connect() as connection:
            row = connection.execute(_CONSENT_AT_CURSOR, params).one_or_none()
            if row is None:  # before the indexer's first range: no cursor yet
                as_of = None
                row = connection.execute(_CONSENT_WITHOUT_CURSOR, params).one_or_none()
            else:
                as_of = row.as_of

        def decide(granted: bool, reason: str | None, **fields: object) -> ConsentDecision:
            return ConsentDecision(
                customer_id,
                purpose_id,
                org_id,
                granted,
                reason,
                as_of,
                **fields,  # type: ignore[arg-type]
            )

        if row is None or row.granted is None:
            return decide(False, "no_consent")
        # `version` and `active` are NOT NULL columns: NULL means no such purpose.
        known_purpose = row.current_version is not None
        fields: dict[str, object] = {
            "purpose_version": row.purpose_version,
            "current_purpose_version": row.current_version,
            "expires_at": row.expires_at,
            "changed_at": row.changed_at,
            "block_number": row.block_number,
            "tx_hash": row.tx_hash,
            "receipt_hash": row.receipt_hash,
        }
        if not row.granted:
            return decide(False, "revoked", **fields)
        if row.expires_at is not None and (now or utcnow()) >= row.expires_at:
            return decide(False, "expired", **fields)
        if not known_purpose:
            return decide(False, "unknown_purpose", **fields)
        if not row.active:
            return decide(False, "purpose_retired", **fields)
        if row.current_version != row.purpose_version:
            return decide(False, "notice_changed", **fields)
        return decide(True, None, **fields)

    def shared_with(self, purpose_id: str) -> list[int]:
        """The organisations the purpose's controller shares it with (`isSharedWith`)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(RmPurposeShare.org_id)
                .where(RmPurposeShare.purpose_id == purpose_id.lower())
                .order_by(RmPurposeShare.org_id)
            ).scalars()
            return [int(org) for org in rows]

    def may_process(
        self, customer_id: str, purpose_id: str, org_id: int, *, now: datetime | None = None
    ) -> ProcessingDecision:
        """The read-model answer of `ConsentLedger.mayProcess(customer, purpose, org)`: the purpose
        is known, active, controlled by `org_id` or shared with it, and, when its basis is
        consent, the customer's consent for `org_id` counts (`consent`). The contract's view is
        the rule; a test drives the same scenarios through both and requires the same answers."""
        key = purpose_id.lower()
        with self.engine.connect() as connection:
            as_of = self._as_of(connection)
            purpose = connection.execute(
                select(RmPurpose.controller_org, RmPurpose.basis, RmPurpose.active).where(
                    RmPurpose.purpose_id == key
                )
            ).one_or_none()
            shared = (
                purpose is not None
                and purpose.controller_org != org_id
                and connection.execute(
                    select(RmPurposeShare.org_id).where(
                        RmPurposeShare.purpose_id == key, RmPurposeShare.org_id == org_id
                    )
                ).first()
                is not None
            )

        def decide(answer: str, consent: ConsentDecision | None = None) -> ProcessingDecision:
            basis = None if purpose is None else str(purpose.basis)
            return ProcessingDecision(
                customer_id.lower(), key, org_id, answer, basis, consent, as_of
            )

        if purpose is None:
            return decide("unknown_purpose")
        if not purpose.active:
            return decide("purpose_retired")
        if purpose.controller_org != org_id and not shared:
            return decide("purpose_not_shared")
        if purpose.basis != "consent":
            return decide("allowed")
        consent = self.consent(customer_id, key, org_id, now=now)
        return decide("allowed" if consent.granted else "no_live_consent", consent)

    def has_consent(self, customer_id: str, purpose_id: str, org_id: int) -> bool:
        return self.consent(customer_id, purpose_id, org_id).granted

    def audience(self, purpose_id: str, org_id: int, *, now: datetime | None = None) -> list[str]:
        """The customer ids whose consent to `purpose_id` for `org_id` counts at `now`."""
        moment = now or utcnow()
        query = (
            select(RmConsent.customer_id)
            .join(RmPurpose, RmPurpose.purpose_id == RmConsent.purpose_id)
            .where(
                RmConsent.purpose_id == purpose_id.lower(),
                RmConsent.org_id == org_id,
                RmConsent.granted.is_(True),
                RmPurpose.active.is_(True),
                RmPurpose.version == RmConsent.purpose_version,
                (RmConsent.expires_at.is_(None)) | (RmConsent.expires_at > moment),
            )
            .order_by(RmConsent.customer_id)
        )
        with self.engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def consent_history(self, customer_id: str) -> list[ConsentChangeView]:
        """Every consent change of a customer, oldest first."""
        columns = (
            RmConsentChange.customer_id,
            RmConsentChange.purpose_id,
            RmConsentChange.org_id,
            RmConsentChange.granted,
            RmConsentChange.purpose_version,
            RmConsentChange.expires_at,
            RmConsentChange.nonce,
            RmConsentChange.receipt_hash,
            RmConsentChange.method,
            RmConsentChange.submitter,
            RmConsentChange.block_number,
            RmConsentChange.tx_hash,
            RmConsentChange.log_index,
            RmConsentChange.changed_at,
        )
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(*columns)
                .where(RmConsentChange.customer_id == customer_id.lower())
                .order_by(RmConsentChange.block_number, RmConsentChange.log_index)
            ).all()
        return [ConsentChangeView(**row._mapping) for row in rows]


_CONSENT_COLUMNS = (
    RmConsent.granted,
    RmConsent.purpose_version,
    RmConsent.expires_at,
    RmConsent.changed_at,
    RmConsent.block_number,
    RmConsent.tx_hash,
    RmConsent.receipt_hash,
    RmPurpose.version.label("current_version"),
    RmPurpose.active,
)
_CONSENT_KEY = and_(
    RmConsent.customer_id == bindparam("customer_id"),
    RmConsent.purpose_id == bindparam("purpose_id"),
    RmConsent.org_id == bindparam("org_id"),
)
# The cursor's row, with the consent and its purpose joined when there are any.
_CONSENT_AT_CURSOR = (
    select(IndexerCursor.block_number.label("as_of"), *_CONSENT_COLUMNS)
    .select_from(IndexerCursor)
    .outerjoin(RmConsent, _CONSENT_KEY)
    .outerjoin(RmPurpose, RmPurpose.purpose_id == RmConsent.purpose_id)
    .where(IndexerCursor.name == CURSOR_NAME)
)
_CONSENT_WITHOUT_CURSOR = (
    select(*_CONSENT_COLUMNS)
    .select_from(RmConsent)
    .outerjoin(RmPurpose, RmPurpose.purpose_id == RmConsent.purpose_id)
    .where(_CONSENT_KEY)
)
