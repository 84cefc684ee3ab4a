"""Queries on `customer_records`, `blind_indexes` and `access_log`.

No cryptography here: rows go in and out as `vault.envelope.SealedRecord`s and hex strings
(customer ids and commitments as `0x` + 64 hex digits, blind indexes as 64 hex digits). None of
these functions commit: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from crm_gateway.store import audit
from crm_gateway.store.models import (
    AccessAction,
    AccessDecision,
    AccessLogEntry,
    BlindIndex,
    BlindIndexKind,
    CustomerRecord,
    CustomerStatus,
    utcnow,
)
from crm_gateway.vault.envelope import SealedRecord
from crm_gateway.vault.keys import WrappedKey


class CustomerStoreError(Exception):
    """A customer-record operation that cannot be done as asked."""


class CustomerNotFoundError(CustomerStoreError):
    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        super().__init__(f"no customer record {customer_id}")


class CustomerErasedError(CustomerStoreError):
    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        super().__init__(f"customer record {customer_id} was erased")


class RecordTakenError(CustomerStoreError):
    """A record to revive is not (any more) erased: someone registered the customer meanwhile."""


class StaleVersionError(CustomerStoreError):
    """An update that does not follow the stored version (someone else updated first)."""


# --- records -------------------------------------------------------------------------------------


def get_record(
    session: Session, customer_id: str, *, for_update: bool = False
) -> CustomerRecord | None:
    """The record (active or erased), optionally row-locked (PostgreSQL) for an update."""
    query = select(CustomerRecord).where(CustomerRecord.customer_id == customer_id)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def get_active_record(
    session: Session, customer_id: str, *, for_update: bool = False
) -> CustomerRecord:
    """The active record; `CustomerNotFoundError` or `CustomerErasedError` otherwise."""
    record = get_record(session, customer_id, for_update=for_update)
    if record is None:
        raise CustomerNotFoundError(customer_id)
    if record.status is CustomerStatus.ERASED:
        raise CustomerErasedError(customer_id)
    return record


def existing_record_ids(session: Session, customer_ids: Collection[str]) -> set[str]:
    """Those of `customer_ids` that have a record here (active or erased)."""
    found: set[str] = set()
    for chunk in _chunks(sorted(set(customer_ids))):
        found.update(
            session.scalars(
                select(CustomerRecord.customer_id).where(CustomerRecord.customer_id.in_(chunk))
            )
        )
    return found


def erased_record_ids(session: Session, customer_ids: Collection[str]) -> set[str]:
    """Those of `customer_ids` whose record here is erased."""
    found: set[str] = set()
    for chunk in _chunks(sorted(set(customer_ids))):
        found.update(
            session.scalars(
                select(CustomerRecord.customer_id).where(
                    CustomerRecord.customer_id.in_(chunk),
                    CustomerRecord.status == CustomerStatus.ERASED,
                )
            )
        )
    return found


def commitments_of(session: Session, customer_ids: Collection[str]) -> dict[str, str]:
    """The stored commitment of each of `customer_ids` that has an active record."""
    found: dict[str, str] = {}
    for chunk in _chunks(sorted(set(customer_ids))):
        rows = session.execute(
            select(CustomerRecord.customer_id, CustomerRecord.commitment).where(
                CustomerRecord.customer_id.in_(chunk),
                CustomerRecord.status == CustomerStatus.ACTIVE,
            )
        )
        found.update({customer_id: commitment for customer_id, commitment in rows})
    return found


def active_records(
    session: Session, org_id: int, *, after: str | None, limit: int
) -> Sequence[CustomerRecord]:
    """The next `limit` active records of `org_id` by customer id, after `after`."""
    query = (
        select(CustomerRecord)
        .where(CustomerRecord.org_id == org_id, CustomerRecord.status == CustomerStatus.ACTIVE)
        .order_by(CustomerRecord.customer_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(CustomerRecord.customer_id > after)
    return session.scalars(query).all()


def _chunks(values: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """Slices small enough for an `IN (...)` list on every backend."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def sealed_of(record: CustomerRecord) -> SealedRecord:
    """The sealed profile of an active record."""
    if (
        record.status is CustomerStatus.ERASED
        or record.ciphertext is None
        or record.nonce is None
        or record.wrapped_key is None
        or record.kek_id is None
    ):
        raise CustomerErasedError(record.customer_id)
    return SealedRecord(
        ciphertext=record.ciphertext,
        nonce=record.nonce,
        wrapped_key=WrappedKey(kek_id=record.kek_id, wrapped=record.wrapped_key),
    )


def insert_record(
    session: Session,
    *,
    customer_id: str,
    org_id: int,
    sealed: SealedRecord,
    commitment: str,
    version: int = 1,
) -> CustomerRecord:
    """Add an active record (flushed, so a duplicate id raises `IntegrityError` here)."""
    record = CustomerRecord(
        customer_id=customer_id,
        org_id=org_id,
        version=version,
        status=CustomerStatus.ACTIVE,
        ciphertext=sealed.ciphertext,
        nonce=sealed.nonce,
        wrapped_key=sealed.wrapped_key.wrapped,
        kek_id=sealed.wrapped_key.kek_id,
        commitment=commitment,
    )
    session.add(record)
    session.flush()
    return record


@dataclass(frozen=True)
class NewRecord:
    """A new customer's row: its id, sealed profile, commitment and blind indexes."""

    customer_id: str
    sealed: SealedRecord
    commitment: str
    indexes: Mapping[BlindIndexKind, str | None]


def insert_records(session: Session, records: Sequence[NewRecord], *, org_id: int) -> None:
    """Add active records (version 1) with their blind indexes, as multi-row INSERTs (flushed).

    A taken customer id or blind index raises `IntegrityError` here. ORM bulk INSERTs (plain
    rows, no objects in the session): a tenth of the unit of work's time for an import batch.
    """
    if not records:
        return
    session.execute(
        insert(CustomerRecord),
        [
            {
                "customer_id": record.customer_id,
                "org_id": org_id,
                "version": 1,
                "status": CustomerStatus.ACTIVE,
                "ciphertext": record.sealed.ciphertext,
                "nonce": record.sealed.nonce,
                "wrapped_key": record.sealed.wrapped_key.wrapped,
                "kek_id": record.sealed.wrapped_key.kek_id,
                "commitment": record.commitment,
            }
            for record in records
        ],
    )
    indexes = [
        {"kind": kind, "value": value, "customer_id": record.customer_id}
        for record in records
        for kind, value in record.indexes.items()
        if value is not None
    ]
    if indexes:
        session.execute(insert(BlindIndex), indexes)


def revive_records(session: Session, records: Sequence[NewRecord], *, org_id: int) -> None:
    """Give erased records new contents at version 1, with their blind indexes (flushed).

    For a customer who comes back to this organisation while others still hold their on-chain
    identity: the id is the consortium's, so the erased row is reused rather than a new id made.
    Each row changes only if it is still erased (compare-and-set; on PostgreSQL a concurrent
    reviver waits for the row lock and then finds it active), else `RecordTakenError`.
    """
    if not records:
        return
    table = cast(Table, CustomerRecord.__table__)
    now = utcnow()
    statement = (
        update(table)
        .where(
            table.c.customer_id == bindparam("b_customer_id"),
            table.c.org_id == org_id,
            table.c.status == CustomerStatus.ERASED.value,
        )
        .values(
            status=CustomerStatus.ACTIVE.value,
            version=1,
            ciphertext=bindparam("b_ciphertext"),
            nonce=bindparam("b_nonce"),
            wrapped_key=bindparam("b_wrapped_key"),
            kek_id=bindparam("b_kek_id"),
            commitment=bindparam("b_commitment"),
            erased_at=None,
            created_at=now,
            updated_at=now,
        )
    )
    connection = session.connection()
    for record in records:
        revived = connection.execute(
            statement,
            {
                "b_customer_id": record.customer_id,
                "b_ciphertext": record.sealed.ciphertext,
                "b_nonce": record.sealed.nonce,
                "b_wrapped_key": record.sealed.wrapped_key.wrapped,
                "b_kek_id": record.sealed.wrapped_key.kek_id,
                "b_commitment": record.commitment,
            },
        ).rowcount
        if revived != 1:
            raise RecordTakenError(f"customer record {record.customer_id} is not erased here")
    session.add_all(
        [
            BlindIndex(kind=kind, value=value, customer_id=record.customer_id)
            for record in records
            for kind, value in record.indexes.items()
            if value is not None
        ]
    )
    session.flush()


def update_record(
    session: Session,
    record: CustomerRecord,
    *,
    version: int,
    sealed: SealedRecord,
    commitment: str,
) -> CustomerRecord:
    """Store a new version (sealed for `version`, which must be the stored version + 1)."""
    if record.status is CustomerStatus.ERASED:
        raise CustomerErasedError(record.customer_id)
    if version != record.version + 1:
        raise StaleVersionError(
            f"record {record.customer_id} is at version {record.version}, not {version - 1}"
        )
    record.version = version
    record.ciphertext = sealed.ciphertext
    record.nonce = sealed.nonce
    record.wrapped_key = sealed.wrapped_key.wrapped
    record.kek_id = sealed.wrapped_key.kek_id
    record.commitment = commitment
    session.flush()
    return record


def erase_record(
    session: Session, customer_id: str, *, at: datetime | None = None
) -> CustomerRecord:
    """Crypto-shred a record: drop ciphertext, nonce, wrapped key and KEK id, and blind indexes.

    Idempotent: erasing an erased record returns it unchanged. The id, version and commitment
    stay (they are public on-chain anyway and link to nothing once the salt is gone).
    """
    record = get_record(session, customer_id, for_update=True)
    if record is None:
        raise CustomerNotFoundError(customer_id)
    if record.status is CustomerStatus.ERASED:
        return record
    session.execute(delete(BlindIndex).where(BlindIndex.customer_id == customer_id))
    record.status = CustomerStatus.ERASED
    record.ciphertext = None
    record.nonce = None
    record.wrapped_key = None
    record.kek_id = None
    record.erased_at = at or utcnow()
    session.flush()
    return record


# --- blind indexes -------------------------------------------------------------------------------


def set_blind_indexes(
    session: Session, customer_id: str, indexes: Mapping[BlindIndexKind, str | None]
) -> None:
    """Replace the customer's index of each kind given (None removes that kind)."""
    kinds = list(indexes)
    if not kinds:
        return
    session.execute(
        delete(BlindIndex).where(BlindIndex.customer_id == customer_id, BlindIndex.kind.in_(kinds))
    )
    for kind, value in indexes.items():
        if value is not None:
            session.add(BlindIndex(kind=kind, value=value, customer_id=customer_id))
    session.flush()


def find_by_blind_index(session: Session, kind: BlindIndexKind, value: str) -> str | None:
    """The id of the active customer with this blind index, if any."""
    return session.scalars(
        select(BlindIndex.customer_id).where(BlindIndex.kind == kind, BlindIndex.value == value)
    ).one_or_none()


def find_conflicts(
    session: Session, indexes: Mapping[BlindIndexKind, str | None], *, exclude: str | None = None
) -> dict[BlindIndexKind, str]:
    """For each given index already taken (by a customer other than `exclude`), that customer."""
    conflicts: dict[BlindIndexKind, str] = {}
    for kind, value in indexes.items():
        if value is None:
            continue
        owner = find_by_blind_index(session, kind, value)
        if owner is not None and owner != exclude:
            conflicts[kind] = owner
    return conflicts


def owners_by_blind_index(
    session: Session, kind: BlindIndexKind, values: Collection[str]
) -> dict[str, str]:
    """For each of `values` that is a blind index of `kind`, the customer it belongs to."""
    owners: dict[str, str] = {}
    for chunk in _chunks(sorted(set(values))):
        rows = session.execute(
            select(BlindIndex.value, BlindIndex.customer_id).where(
                BlindIndex.kind == kind, BlindIndex.value.in_(chunk)
            )
        )
        owners.update({value: customer_id for value, customer_id in rows})
    return owners


def blind_indexes_of(session: Session, customer_id: str) -> dict[BlindIndexKind, str]:
    rows = session.execute(
        select(BlindIndex.kind, BlindIndex.value).where(BlindIndex.customer_id == customer_id)
    ).all()
    return {kind: value for kind, value in rows}


# --- key rotation --------------------------------------------------------------------------------


class RewrapCandidate(NamedTuple):
    customer_id: str
    kek_id: str
    wrapped_key: bytes


@dataclass(frozen=True)
class Rewrap:
    """Replace `old_wrapped_key` (under `old_kek_id`) by `wrapped_key` under `kek_id`."""

    customer_id: str
    old_kek_id: str
    old_wrapped_key: bytes
    kek_id: str
    wrapped_key: bytes


def _not_on(target_kek_id: str) -> list[ColumnElement[bool]]:
    return [
        CustomerRecord.status == CustomerStatus.ACTIVE,
        CustomerRecord.kek_id.is_not(None),
        CustomerRecord.kek_id != target_kek_id,
    ]


def count_records_to_rewrap(session: Session, target_kek_id: str) -> int:
    """Active records whose data key is not wrapped under `target_kek_id`."""
    return (
        session.scalar(
            select(func.count()).select_from(CustomerRecord).where(and_(*_not_on(target_kek_id)))
        )
        or 0
    )


def records_to_rewrap(
    session: Session, target_kek_id: str, *, after: str | None, limit: int
) -> list[RewrapCandidate]:
    """The next `limit` records (by customer id, after `after`) not under `target_kek_id`."""
    query = (
        select(CustomerRecord.customer_id, CustomerRecord.kek_id, CustomerRecord.wrapped_key)
        .where(*_not_on(target_kek_id))
        .order_by(CustomerRecord.customer_id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(CustomerRecord.customer_id > after)
    return [
        RewrapCandidate(customer_id, kek_id, wrapped_key)
        for customer_id, kek_id, wrapped_key in session.execute(query)
        if kek_id is not None and wrapped_key is not None
    ]


def apply_rewraps(session: Session, rewraps: Sequence[Rewrap]) -> int:
    """Apply re-wraps whose row still holds the old wrapped key; how many rows changed.

    One executemany round trip (a compare-and-set per row). Nothing else in the row changes,
    `updated_at` included: the profile is the same.
    """
    if not rewraps:
        return 0
    table = cast(Table, CustomerRecord.__table__)
    statement = (
        update(table)
        .where(
            table.c.customer_id == bindparam("b_customer_id"),
            table.c.kek_id == bindparam("b_old_kek_id"),
            table.c.wrapped_key == bindparam("b_old_wrapped_key"),
        )
        .values(
            kek_id=bindparam("b_kek_id"),
            wrapped_key=bindparam("b_wrapped_key"),
            updated_at=table.c.updated_at,
        )
    )
    connection = session.connection()
    parameters = [
        {
            "b_customer_id": item.customer_id,
            "b_old_kek_id": item.old_kek_id,
            "b_old_wrapped_key": item.old_wrapped_key,
            "b_kek_id": item.kek_id,
            "b_wrapped_key": item.wrapped_key,
        }
        for item in rewraps
    ]
    if not connection.dialect.supports_sane_multi_rowcount:
        return sum(connection.execute(statement, row).rowcount for row in parameters)
    return connection.execute(statement, parameters).rowcount


def count_records_using_kek(session: Session, kek_id: str) -> int:
    """Records whose data key is wrapped under `kek_id` (0: the KEK may be retired)."""
    return (
        session.scalar(
            select(func.count()).select_from(CustomerRecord).where(CustomerRecord.kek_id == kek_id)
        )
        or 0
    )


def kek_usage(session: Session) -> dict[str, int]:
    """How many records each KEK id wraps the data key of."""
    rows = session.execute(
        select(CustomerRecord.kek_id, func.count())
        .where(CustomerRecord.kek_id.is_not(None))
        .group_by(CustomerRecord.kek_id)
    ).all()
    return {kek_id: count for kek_id, count in rows if kek_id is not None}


# --- access log ----------------------------------------------------------------------------------


def log_access(
    session: Session,
    *,
    action: AccessAction,
    decision: AccessDecision,
    customer_id: str | None,
    purpose: str | None = None,
    reason: str | None = None,
    api_key_id: str | None = None,
    org_id: int | None = None,
    account: str | None = None,
    at: datetime | None = None,
) -> AccessLogEntry:
    """Append a hash-chained access-log entry (flushed, so `seq` is set; see `store.audit`).

    Never pass personal data here. The chain head stays locked until the transaction ends.
    """
    return audit.append_entry(
        session,
        audit.NewEntry(
            action=action,
            decision=decision,
            customer_id=customer_id,
            purpose=purpose,
            reason=reason,
            api_key_id=api_key_id,
            org_id=org_id,
            account=account,
            at=at,
        ),
    )


def log_accesses(
    session: Session,
    customer_ids: Sequence[str],
    *,
    action: AccessAction,
    decision: AccessDecision,
    purpose: str | None = None,
    api_key_id: str | None = None,
    org_id: int | None = None,
    account: str | None = None,
    at: datetime | None = None,
) -> None:
    """`log_access` for many customers at once (one executemany INSERT), in the given order,
    hash-chained one after the other."""
    when = at or utcnow()
    audit.append_entries(
        session,
        [
            audit.NewEntry(
                action=action,
                decision=decision,
                customer_id=customer_id,
                purpose=purpose,
                api_key_id=api_key_id,
                org_id=org_id,
                account=account,
                at=when,
            )
            for customer_id in customer_ids
        ],
    )


def created_with_purpose(session: Session, customer_ids: Collection[str], purpose: str) -> set[str]:
    """Those of `customer_ids` whose record was created with `purpose` in the access log.

    An import logs each customer it creates with the import's purpose, which is how a rerun of
    the same import recognises the rows it already brought in.
    """
    found: set[str] = set()
    for chunk in _chunks(sorted(set(customer_ids))):
        rows = session.scalars(
            select(AccessLogEntry.customer_id).where(
                AccessLogEntry.customer_id.in_(chunk),
                AccessLogEntry.action == AccessAction.CREATE,
                AccessLogEntry.decision == AccessDecision.ALLOWED,
                AccessLogEntry.purpose == purpose,
            )
        )
        found.update(customer_id for customer_id in rows if customer_id is not None)
    return found


def access_log_for(session: Session, customer_id: str) -> Sequence[AccessLogEntry]:
    """The customer's access-log entries, oldest first."""
    return session.scalars(
        select(AccessLogEntry)
        .where(AccessLogEntry.customer_id == customer_id)
        .order_by(AccessLogEntry.seq)
    ).all()
