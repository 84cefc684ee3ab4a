"""The gateway's tables, as typed SQLAlchemy 2 declarative models.

Portable across SQLite and PostgreSQL: string UUIDs (`String(36)`), JSON that is JSONB on
PostgreSQL, timestamps that are always timezone-aware UTC (SQLite keeps no zone, so `UTCDateTime`
adds it back), and enum columns stored as their string value with a CHECK constraint.

Operations are ordered by `seq`, the integer primary key (an auto-increment that never reuses a
value: `AUTOINCREMENT` on SQLite, an identity column on PostgreSQL); `id`, a UUID string, is the
public handle. On PostgreSQL a lower `seq` can commit after a higher one, so the sender must select
pending rows ordered by `seq`, never resume from a high-water mark.

Every schema change needs an Alembic revision under `alembic/versions`; the tests compare these
models against the migrated database on both backends.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

# Deterministic constraint names, so migrations (and SQLite batch rebuilds) can refer to them.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ADDRESS_LENGTH = 42  # "0x" + 40 hex digits, EIP-55 checksummed
TX_HASH_LENGTH = 66  # "0x" + 64 hex digits
SHA256_HEX_LENGTH = 64


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


def _same_as_created_at(context: DefaultExecutionContext) -> datetime:
    """Default of `updated_at`: the row's `created_at`, so a new row has both equal."""
    parameters: dict[str, Any] = context.get_current_parameters()  # type: ignore[no-untyped-call]
    created = parameters.get("created_at")
    return created if isinstance(created, datetime) else utcnow()


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is stored and returned as timezone-aware UTC; naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given where a timezone-aware one is required")
        value = value.astimezone(UTC)
        # SQLite keeps the text as given; store it without an offset so it sorts as text.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


E = TypeVar("E", bound=StrEnum)


class StrEnumType(TypeDecorator[E]):
    """A `StrEnum` stored as its string value (pair it with a CHECK constraint via `_in`)."""

    impl = String(16)
    cache_ok = True

    def __init__(self, enum: type[E]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


def _json() -> TypeEngine[Any]:
    """JSON, JSONB on PostgreSQL; Python None is SQL NULL (not the JSON literal null)."""
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def _bigint() -> TypeEngine[int]:
    """BIGINT, but INTEGER on SQLite where only `INTEGER PRIMARY KEY` auto-increments."""
    return BigInteger().with_variant(Integer(), "sqlite")


def _in(column: str, enum: type[StrEnum]) -> str:
    values = ", ".join(f"'{member.value}'" for member in enum)
    return f"{column} IN ({values})"


class OperationStatus(StrEnum):
    """Where an outbox row stands in the write pipeline."""

    PENDING = "pending"  # committed by the API, not yet in a signed transaction
    SUBMITTED = "submitted"  # carried by a chain transaction that was sent
    CONFIRMED = "confirmed"  # mined and succeeded; `result` is set
    FAILED = "failed"  # reverted or refused; `error_name` / `error_args` are set


class ChainTransactionStatus(StrEnum):
    """The life of one signed transaction."""

    SENT = "sent"  # signed and recorded (and broadcast at least once unless broadcast_count=0)
    MINED = "mined"  # a receipt with status 1
    FAILED = "failed"  # a receipt with status 0
    DROPPED = "dropped"  # the node lost it and its nonce was reused by a replacement


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ApiKey(Base):
    """An API key of a CRM application; only a SHA-256 of the key is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    # The first 12 characters of the key ("crm_" + 8 random ones), to find the row to compare.
    prefix: Mapped[str] = mapped_column(String(12), unique=True, index=True)
    key_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))
    org_id: Mapped[int] = mapped_column(Integer, index=True)
    account: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    role: Mapped[str] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id!r}, prefix={self.prefix!r}, org_id={self.org_id})"


class ChainTransaction(Base):
    """One signed transaction from a gateway account; it may carry several operations."""

    __tablename__ = "chain_transactions"
    __table_args__ = (
        UniqueConstraint("sender", "nonce"),
        CheckConstraint(_in("status", ChainTransactionStatus), name="status"),
        Index("ix_chain_transactions_status", "status"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_bigint(), Identity(), primary_key=True)
    sender: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    nonce: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(TX_HASH_LENGTH), unique=True)
    raw_tx: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[ChainTransactionStatus] = mapped_column(
        StrEnumType(ChainTransactionStatus), default=ChainTransactionStatus.SENT
    )
    gas_limit: Mapped[int] = mapped_column(BigInteger)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    block_hash: Mapped[str | None] = mapped_column(String(TX_HASH_LENGTH))
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    broadcast_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    first_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    mined_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set once the receipt is still there `finality_seconds` after it was first seen; until
    # then the watcher keeps checking, because a node that crashed may have forgotten it.
    finalized_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    operations: Mapped[list[Operation]] = relationship(
        back_populates="chain_tx", order_by="Operation.seq"
    )

    def __repr__(self) -> str:
        return (
            f"ChainTransaction(id={self.id}, sender={self.sender!r}, nonce={self.nonce}, "
            f"status={self.status!r})"
        )


class Operation(Base):
    """An outbox row: one requested chain write, from the API to its receipt."""

    __tablename__ = "operations"
    __table_args__ = (
        # A key may reuse an idempotency key only for the same request (see `request_hash`).
        UniqueConstraint("api_key_id", "idempotency_key"),
        # NULLs are distinct in a unique constraint, so writes without an API key (the gateway's
        # own, e.g. from the CLI) get their idempotency keys enforced by a partial index.
        Index(
            "uq_operations_idempotency_key_internal",
            "idempotency_key",
            unique=True,
            sqlite_where=text("api_key_id IS NULL AND idempotency_key IS NOT NULL"),
            postgresql_where=text("api_key_id IS NULL AND idempotency_key IS NOT NULL"),
        ),
        CheckConstraint(_in("status", OperationStatus), name="status"),
        Index("ix_operations_status_seq", "status", "seq"),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(_bigint(), Identity(), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, default=new_uuid)
    api_key_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("api_keys.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))
    kind: Mapped[str] = mapped_column(String(64))
    contract: Mapped[str] = mapped_column(String(128))
    function: Mapped[str] = mapped_column(String(128))
    args: Mapped[list[Any]] = mapped_column(_json())
    sender: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    status: Mapped[OperationStatus] = mapped_column(
        StrEnumType(OperationStatus), default=OperationStatus.PENDING
    )
    error_name: Mapped[str | None] = mapped_column(String(128))
    error_args: Mapped[Any | None] = mapped_column(_json())
    chain_tx_id: Mapped[int | None] = mapped_column(
        _bigint(), ForeignKey("chain_transactions.id"), index=True
    )
    result: Mapped[Any | None] = mapped_column(_json())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=_same_as_created_at, onupdate=utcnow
    )

    api_key: Mapped[ApiKey | None] = relationship()
    chain_tx: Mapped[ChainTransaction | None] = relationship(back_populates="operations")

    def __repr__(self) -> str:
        return (
            f"Operation(seq={self.seq}, id={self.id!r}, kind={self.kind!r}, status={self.status!r})"
        )


class Lease(Base):
    """A named lease one process holds until `expires_at`: who signs for an account (`signer:`
    + address), who runs the organisation's background work (`watcher`, `indexer`, `anchor`).

    Taken and renewed by compare-and-set (`pipeline.leases`); a holder that dies loses it when it
    expires, and another process takes over.
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"Lease(name={self.name!r}, holder={self.holder!r})"


# --- customers: the personal-data vault ---------------------------------------------------------

BYTES32_HEX_LENGTH = 66  # "0x" + 64 hex digits: customer ids and commitments
KEK_ID_LENGTH = 64


class CustomerStatus(StrEnum):
    """Whether a customer record still holds personal data."""

    ACTIVE = "active"
    ERASED = "erased"  # crypto-shredded: no ciphertext, no key material, no blind indexes


class BlindIndexKind(StrEnum):
    """What a blind index is an HMAC of."""

    EMAIL = "email"
    PHONE = "phone"


class AccessAction(StrEnum):
    """What a caller tried to do: with a customer's personal data, or with keys and roles (at
    most 16 characters: the column's width)."""

    CREATE = "create"
    READ = "read"
    LOOKUP = "lookup"
    UPDATE = "update"
    VERIFY = "verify"
    EXPORT = "export"
    ERASE = "erase"
    LINK_WALLET = "link_wallet"
    # Role and key changes (no customer): who changed which grant or key, never a secret.
    ROLE_GRANT = "role_grant"
    ROLE_REVOKE = "role_revoke"
    APIKEY_CREATE = "apikey_create"
    APIKEY_REVOKE = "apikey_revoke"
    KEY_ROTATE = "key_rotate"
    KEY_RETIRE = "key_retire"


class AccessDecision(StrEnum):
    ALLOWED = "allowed"
    REFUSED = "refused"


class CustomerRecord(Base):
    """One organisation's encrypted copy of a customer's profile (one row per customer).

    Active: `ciphertext` is the sealed `0x01 || salt || canonical profile` (AES-256-GCM, tag
    included), `nonce` its 12-byte nonce, `wrapped_key` the data key wrapped by the KEK `kek_id`;
    the AAD binds it to `customer_id`, `version` and `org_id` (see `vault.records`). The salt of
    the commitment lives inside the sealed payload, so there is no salt column to shred.
    Erased: all four are NULL (the CHECK constraint enforces it), `erased_at` is set; only the
    id, version and commitment (public on-chain anyway) remain.
    """

    __tablename__ = "customer_records"
    __table_args__ = (
        CheckConstraint(_in("status", CustomerStatus), name="status"),
        CheckConstraint("version >= 1", name="version"),
        CheckConstraint(
            "(status = 'active' AND ciphertext IS NOT NULL AND nonce IS NOT NULL"
            " AND wrapped_key IS NOT NULL AND kek_id IS NOT NULL AND erased_at IS NULL)"
            " OR (status = 'erased' AND ciphertext IS NULL AND nonce IS NULL"
            " AND wrapped_key IS NULL AND kek_id IS NULL AND erased_at IS NOT NULL)",
            name="key_material",
        ),
        Index("ix_customer_records_kek_id", "kek_id"),
    )

    customer_id: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH), primary_key=True)
    org_id: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[CustomerStatus] = mapped_column(
        StrEnumType(CustomerStatus), default=CustomerStatus.ACTIVE
    )
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    nonce: Mapped[bytes | None] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    kek_id: Mapped[str | None] = mapped_column(String(KEK_ID_LENGTH))
    commitment: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=_same_as_created_at, onupdate=utcnow
    )
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def is_erased(self) -> bool:
        return self.status is CustomerStatus.ERASED

    def __repr__(self) -> str:
        return (
            f"CustomerRecord(customer_id={self.customer_id!r}, version={self.version}, "
            f"status={self.status!r})"
        )


class BlindIndex(Base):
    """A keyed HMAC of an active customer's normalised e-mail or phone (see `vault.blind_index`).

    The primary key makes each (kind, value) unique; rows exist only for active records (erasure
    deletes them), so that is uniqueness among active records.
    """

    __tablename__ = "blind_indexes"
    __table_args__ = (CheckConstraint(_in("kind", BlindIndexKind), name="kind"),)

    kind: Mapped[BlindIndexKind] = mapped_column(StrEnumType(BlindIndexKind), primary_key=True)
    value: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), primary_key=True)
    customer_id: Mapped[str] = mapped_column(
        String(BYTES32_HEX_LENGTH),
        ForeignKey("customer_records.customer_id", ondelete="CASCADE"),
        index=True,
    )

    def __repr__(self) -> str:
        return f"BlindIndex(kind={self.kind!r}, customer_id={self.customer_id!r})"


class AccessLogEntry(Base):
    """One attempt to use a customer's personal data (who, which customer, why, the decision), or
    a change of a role or key.

    Append-only and hash-chained: `seq` runs from 1 without gaps, `prev_hash` is the previous
    entry's `entry_hash` (64 zeros for entry 1), and `entry_hash` is a SHA-256 over the entry's
    fields and `prev_hash` (see `store.audit.entry_hash`); both are written with the entry, only
    by `store.audit.append_entries` (`log_access`, `log_accesses`). Never holds personal data:
    lookups log the customer found, not the e-mail or phone asked for.
    """

    __tablename__ = "access_log"
    __table_args__ = (
        CheckConstraint(_in("decision", AccessDecision), name="decision"),
        Index("ix_access_log_customer_id_seq", "customer_id", "seq"),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(_bigint(), Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    api_key_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("api_keys.id"))
    org_id: Mapped[int | None] = mapped_column(Integer)
    account: Mapped[str | None] = mapped_column(String(ADDRESS_LENGTH))
    customer_id: Mapped[str | None] = mapped_column(String(BYTES32_HEX_LENGTH))
    purpose: Mapped[str | None] = mapped_column(String(200))
    # No CHECK on `action`: the list grows (issue 6 logs key and role changes too).
    action: Mapped[AccessAction] = mapped_column(StrEnumType(AccessAction))
    decision: Mapped[AccessDecision] = mapped_column(StrEnumType(AccessDecision))
    reason: Mapped[str | None] = mapped_column(String(500))
    prev_hash: Mapped[str | None] = mapped_column(String(SHA256_HEX_LENGTH))
    entry_hash: Mapped[str | None] = mapped_column(String(SHA256_HEX_LENGTH))

    def __repr__(self) -> str:
        return (
            f"AccessLogEntry(seq={self.seq}, action={self.action!r}, "
            f"decision={self.decision!r}, customer_id={self.customer_id!r})"
        )


class AuditChainHead(Base):
    """The end of the access log's hash chain: its last entry and that entry's hash (one row,
    id 1). Appending locks this row first, so concurrent writers never fork the chain (PostgreSQL:
    a row lock until commit; SQLite: the update opens the single write transaction)."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class AuditBatchStatus(StrEnum):
    """Where a batch of the access log stands on its way on-chain."""

    PENDING = "pending"  # its anchoring write is in the outbox or in a sent transaction
    ANCHORED = "anchored"  # the AuditAnchor contract holds its root (chain_batch_id is set)
    FAILED = "failed"  # the write failed; its entries go into a later batch


class AuditBatch(Base):
    """A range of the access log whose Merkle root was sent to the AuditAnchor contract by one
    outbox write (`operation_id`); the transaction and the contract's batch id are filled in
    from the operation once it is confirmed. Only one batch that has not failed may start at
    a given entry."""

    __tablename__ = "audit_batches"
    __table_args__ = (
        CheckConstraint(_in("status", AuditBatchStatus), name="status"),
        CheckConstraint("first_seq >= 1 AND last_seq >= first_seq", name="range"),
        Index(
            "uq_audit_batches_first_seq_live",
            "first_seq",
            unique=True,
            sqlite_where=text("status != 'failed'"),
            postgresql_where=text("status != 'failed'"),
        ),
        Index("ix_audit_batches_last_seq", "last_seq"),
        UniqueConstraint("contract", "chain_batch_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_bigint(), Identity(), primary_key=True)
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH))
    org_id: Mapped[int] = mapped_column(Integer)
    contract: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    operation_id: Mapped[str] = mapped_column(String(36), ForeignKey("operations.id"), unique=True)
    status: Mapped[AuditBatchStatus] = mapped_column(
        StrEnumType(AuditBatchStatus), default=AuditBatchStatus.PENDING
    )
    chain_batch_id: Mapped[int | None] = mapped_column(BigInteger)
    tx_hash: Mapped[str | None] = mapped_column(String(TX_HASH_LENGTH))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    block_hash: Mapped[str | None] = mapped_column(String(TX_HASH_LENGTH))
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    anchored_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return (
            f"AuditBatch(id={self.id}, entries={self.first_seq}..{self.last_seq}, "
            f"status={self.status!r}, chain_batch_id={self.chain_batch_id})"
        )


# --- read model: the indexer's bookkeeping and the projections of contract events -------------
#
# Written only by `crm_gateway.indexer`; everything here can be dropped and rebuilt from the chain
# (`crm-chaincode index rebuild`). Projection tables are named `rm_*`; each is a pure function of
# `chain_events` (see `crm_gateway.indexer.projections`).


class IndexerCursor(Base):
    """How far the indexer has read the chain: the last block whose events are all in
    `chain_events` and applied to the projections, and that block's hash (checked against the
    chain before every step, to detect a reorg)."""

    __tablename__ = "indexer_cursor"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(TX_HASH_LENGTH))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"IndexerCursor(name={self.name!r}, block_number={self.block_number})"


class IndexedBlock(Base):
    """The hash of a recent block the indexer read (the cursor's, and every block with events),
    kept `INDEXER_REORG_DEPTH` blocks deep to find the common ancestor after a reorg."""

    __tablename__ = "indexed_blocks"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(TX_HASH_LENGTH))


class IndexedContract(Base):
    """A contract whose logs the read model includes, from `from_block` (its deployment block).

    A contract that appears in the deployment record later, deployed below the cursor, makes the
    indexer rewind to its deployment block so that its past events are read too.
    """

    __tablename__ = "indexed_contracts"

    address: Mapped[str] = mapped_column(String(ADDRESS_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    from_block: Mapped[int] = mapped_column(BigInteger)


class ChainEvent(Base):
    """One decoded log of one of our contracts on the canonical chain, stored exactly once
    (unique by transaction hash and log index); events of blocks that left the chain are deleted."""

    __tablename__ = "chain_events"
    __table_args__ = (
        UniqueConstraint("tx_hash", "log_index"),
        Index("ix_chain_events_block_number_log_index", "block_number", "log_index"),
        Index("ix_chain_events_contract_event", "contract", "event"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_bigint(), Identity(), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(TX_HASH_LENGTH))
    tx_hash: Mapped[str] = mapped_column(String(TX_HASH_LENGTH))
    log_index: Mapped[int] = mapped_column(Integer)
    contract: Mapped[str] = mapped_column(String(128))
    event: Mapped[str] = mapped_column(String(128))
    args: Mapped[dict[str, Any]] = mapped_column(_json())
    block_timestamp: Mapped[datetime] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return (
            f"ChainEvent(block_number={self.block_number}, log_index={self.log_index}, "
            f"contract={self.contract!r}, event={self.event!r})"
        )


class RmOrganization(Base):
    """Projection of the Consortium's organisations: name, first admin, active or suspended."""

    __tablename__ = "rm_organizations"

    org_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))
    admin: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    active: Mapped[bool] = mapped_column(Boolean)
    updated_block: Mapped[int] = mapped_column(BigInteger)


class RmMember(Base):
    """Projection of organisation membership: the organisation each account belongs to now."""

    __tablename__ = "rm_members"
    __table_args__ = (Index("ix_rm_members_org_id", "org_id"),)

    account: Mapped[str] = mapped_column(String(ADDRESS_LENGTH), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger)
    joined_block: Mapped[int] = mapped_column(BigInteger)


class RmRoleHolding(Base):
    """Projection of the Consortium's role grants: who holds which role, in which organisation
    (the account's current one; NULL for none), and whether the grant is in force (`active`:
    the account's organisation is active, or it has none), as `hasActiveRole` answers."""

    __tablename__ = "rm_role_holdings"
    __table_args__ = (Index("ix_rm_role_holdings_org_id", "org_id"),)

    account: Mapped[str] = mapped_column(String(ADDRESS_LENGTH), primary_key=True)
    role: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH), primary_key=True)
    org_id: Mapped[int | None] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean)
    granted_block: Mapped[int] = mapped_column(BigInteger)


class RmCustomer(Base):
    """Projection of the CustomerRegistry's identities: status, linked wallet, the next
    wallet-link nonce. The holders and their commitments are in `rm_customer_holders`."""

    __tablename__ = "rm_customers"
    __table_args__ = (
        CheckConstraint(_in("status", CustomerStatus), name="status"),
        Index("ix_rm_customers_wallet", "wallet"),
    )

    customer_id: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH), primary_key=True)
    status: Mapped[CustomerStatus] = mapped_column(StrEnumType(CustomerStatus))
    wallet: Mapped[str | None] = mapped_column(String(ADDRESS_LENGTH))
    wallet_nonce: Mapped[int] = mapped_column(BigInteger)
    registered_block: Mapped[int] = mapped_column(BigInteger)
    updated_block: Mapped[int] = mapped_column(BigInteger)


class RmCustomerHolder(Base):
    """Projection of one holder organisation's view of a customer: version and commitment."""

    __tablename__ = "rm_customer_holders"
    __table_args__ = (Index("ix_rm_customer_holders_org_id", "org_id"),)

    customer_id: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)
    commitment: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH))
    updated_block: Mapped[int] = mapped_column(BigInteger)


class RmPurpose(Base):
    """Projection of the PurposeRegistry: each purpose's controller, current notice version and
    hash, lawful basis (by name: consent, contract, legal_obligation, legitimate_interest) and
    whether it is still active (not retired)."""

    __tablename__ = "rm_purposes"

    purpose_id: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH), primary_key=True)
    controller_org: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[int] = mapped_column(BigInteger)
    notice_hash: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH))
    basis: Mapped[str] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean)
    updated_block: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RmPurposeShare(Base):
    """Projection of the PurposeRegistry's sharing: each organisation a purpose's controller
    shares it with (`PurposeShared`, removed by `PurposeUnshared`), as `isSharedWith` answers."""

    __tablename__ = "rm_purpose_shares"

    purpose_id: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    shared_block: Mapped[int] = mapped_column(BigInteger)


class RmConsent(Base):
    """Projection of the ConsentLedger's current state: the last change of each (customer,
    purpose, processor organisation), with the block and transaction that made it. Whether it
    counts now also depends on its expiry and on the purpose (`rm_purposes`): see
    `ReadModel.consent`, which answers as the contract's `hasConsent` does."""

    __tablename__ = "rm_consents"
    __table_args__ = (Index("ix_rm_consents_purpose_id_org_id", "purpose_id", "org_id"),)

    customer_id: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH), primary_key=True)
    purpose_id: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    granted: Mapped[bool] = mapped_column(Boolean)
    purpose_version: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # NULL: no expiry
    receipt_hash: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the change's block timestamp
    block_number: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(TX_HASH_LENGTH))
    log_index: Mapped[int] = mapped_column(Integer)


class RmConsentChange(Base):
    """Projection of the ConsentLedger's history: every ConsentChanged, one row each, for a
    customer's consent history and receipts (`method`: wallet_transaction or signature)."""

    __tablename__ = "rm_consent_changes"
    __table_args__ = (
        Index("ix_rm_consent_changes_customer_id_block_number", "customer_id", "block_number"),
        Index("ix_rm_consent_changes_receipt_hash", "receipt_hash"),
    )

    tx_hash: Mapped[str] = mapped_column(String(TX_HASH_LENGTH), primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    customer_id: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH))
    purpose_id: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH))
    org_id: Mapped[int] = mapped_column(BigInteger)
    granted: Mapped[bool] = mapped_column(Boolean)
    purpose_version: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    nonce: Mapped[int] = mapped_column(BigInteger)
    receipt_hash: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH))
    method: Mapped[str] = mapped_column(String(32))
    submitter: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    block_number: Mapped[int] = mapped_column(BigInteger)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RmLoyaltyBalance(Base):
    """Projection of LoyaltyPoints balances: each holder's `balanceOf`, from `Transfer` events.

    Whole points (the token has 0 decimals) as 64-bit integers: the read model holds balances and
    amounts up to 2**63 - 1 points."""

    __tablename__ = "rm_loyalty_balances"

    wallet: Mapped[str] = mapped_column(String(ADDRESS_LENGTH), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger)
    updated_block: Mapped[int] = mapped_column(BigInteger)


class RmLoyaltyMovement(Base):
    """Projection of every LoyaltyPoints balance change, one row per `Transfer` log (its tx hash
    and log index), completed by the event that follows it in the same call: `kind` is earn
    (PointsEarned), reward (ActionRewarded), redeem (PointsRedeemed) or transfer; `org_id` and
    `merchant` are the issuing or redeeming organisation and account; `reason` is the merchant's
    reason code, or the action hash of a reward. `day` (UTC) makes settlement a GROUP BY."""

    __tablename__ = "rm_loyalty_movements"
    __table_args__ = (
        Index("ix_rm_loyalty_movements_from_wallet_block_number", "from_wallet", "block_number"),
        Index("ix_rm_loyalty_movements_to_wallet_block_number", "to_wallet", "block_number"),
        Index("ix_rm_loyalty_movements_moved_at", "moved_at"),
    )

    tx_hash: Mapped[str] = mapped_column(String(TX_HASH_LENGTH), primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    block_number: Mapped[int] = mapped_column(BigInteger)
    moved_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the block timestamp
    day: Mapped[date] = mapped_column(Date)  # moved_at's UTC date
    kind: Mapped[str] = mapped_column(String(16))
    org_id: Mapped[int | None] = mapped_column(BigInteger)
    merchant: Mapped[str | None] = mapped_column(String(ADDRESS_LENGTH))
    amount: Mapped[int] = mapped_column(BigInteger)
    from_wallet: Mapped[str | None] = mapped_column(String(ADDRESS_LENGTH))  # NULL: issued
    to_wallet: Mapped[str | None] = mapped_column(String(ADDRESS_LENGTH))  # NULL: redeemed
    reason: Mapped[str | None] = mapped_column(String(BYTES32_HEX_LENGTH))


# Models kept in modules of their own, imported here so that `Base.metadata` is complete
# wherever the models are (migrations, the schema check).
from crm_gateway.store import erasure as _erasure  # noqa: E402

__all__ = ["_erasure"]


# --- browser sessions: the portal and the console -----------------------------------------------


class WebSessionRow(Base):
    """A browser session (`security.sessions`), shared by every process of the gateway.

    Only the SHA-256 of the cookie's session id is stored, and for a console session the API key's
    hash (as `api_keys` keeps it), never the key: what the database holds cannot be replayed.
    """

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(128))
    csrf_token: Mapped[str] = mapped_column(String(64))
    wallet: Mapped[str | None] = mapped_column(String(42))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class SignInNonce(Base):
    """A Sign-In with Ethereum nonce, accepted once before `expires_at` by any process."""

    __tablename__ = "sign_in_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
