"""The access log's hash chain, and queries on `access_log`, `audit_chain_head`, `audit_batches`.

Every entry is chained to the one before: `entry_hash = SHA-256(canonical(entry, prev_hash))`,
where `prev_hash` is the previous entry's `entry_hash` (`GENESIS_HASH` for entry 1). `seq` is
assigned here, one past the chain head, so the log runs from 1 without gaps: a missing number is
a removed entry, and the anchoring contract can require contiguous batches.

`append_entries` is the only writer (through `customers.log_access` / `log_accesses`). It locks the
single `audit_chain_head` row before reading it, with an `UPDATE ... RETURNING`: on PostgreSQL
that is a row lock held to the end of the transaction, on SQLite the statement opens the one write
transaction (`BEGIN IMMEDIATE`, see `store.db`), so concurrent writers append one after the other
and never fork the chain. The entries and the new head are written in the caller's transaction:
they commit (or roll back) with whatever the entries record. Keep the rest of such a transaction
short after logging: the head stays locked until it ends.

None of these functions commit: the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

from sqlalchemy import Row, Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crm_gateway.store.models import (
    AccessAction,
    AccessDecision,
    AccessLogEntry,
    AuditBatch,
    AuditBatchStatus,
    AuditChainHead,
    ChainTransaction,
    utcnow,
)

#: `prev_hash` of entry 1.
GENESIS_HASH: Final = "0" * 64
#: Domain tag and version of the canonical encoding; the encoding below never changes under it.
HASH_VERSION: Final = "crm-chaincode/access-log/v1"
_HEAD_ID: Final = 1

_log = cast(Table, AccessLogEntry.__table__)
_head = cast(Table, AuditChainHead.__table__)


def canonical_time(at: datetime) -> str:
    """A timestamp as hashed: UTC, microseconds, `Z` (what both backends store exactly)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("access-log timestamps are timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(
    *,
    seq: int,
    at: datetime,
    api_key_id: str | None,
    org_id: int | None,
    account: str | None,
    customer_id: str | None,
    purpose: str | None,
    action: AccessAction | str,
    decision: AccessDecision | str,
    reason: str | None,
    prev_hash: str,
) -> str:
    """SHA-256 (hex) over the canonical encoding of an entry and the previous entry's hash.

    The encoding is a compact JSON array (UTF-8, no whitespace) of `HASH_VERSION` and the fields
    in this order; JSON makes every field's boundary and null-ness unambiguous.
    """
    canonical = json.dumps(
        [
            HASH_VERSION,
            seq,
            canonical_time(at),
            api_key_id,
            org_id,
            account,
            customer_id,
            purpose,
            AccessAction(action).value,
            AccessDecision(decision).value,
            reason,
            prev_hash,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def recompute_hash(entry: AccessLogEntry | Any, *, seq: int | None = None) -> str:
    """The hash an entry (a row with the `access_log` columns) should have, optionally as if it
    sat at another position `seq`; a missing `prev_hash` is hashed as an empty string."""
    return entry_hash(
        seq=entry.seq if seq is None else seq,
        at=entry.at,
        api_key_id=entry.api_key_id,
        org_id=entry.org_id,
        account=entry.account,
        customer_id=entry.customer_id,
        purpose=entry.purpose,
        action=entry.action,
        decision=entry.decision,
        reason=entry.reason,
        prev_hash=entry.prev_hash or "",
    )


@dataclass(frozen=True)
class NewEntry:
    """An entry to append: everything but `seq` and the hashes."""

    action: AccessAction
    decision: AccessDecision
    customer_id: str | None = None
    purpose: str | None = None
    reason: str | None = None
    api_key_id: str | None = None
    org_id: int | None = None
    account: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class ChainHead:
    last_seq: int
    last_hash: str


def lock_head(session: Session) -> ChainHead:
    """Lock the chain head for this transaction and read it (creating it on a database whose
    head row is missing, from the last entry)."""
    statement = (
        update(_head)
        .where(_head.c.id == _HEAD_ID)
        .values(last_seq=_head.c.last_seq)
        .returning(_head.c.last_seq, _head.c.last_hash)
    )
    row = session.execute(statement).one_or_none()
    if row is None:
        last = session.execute(
            select(_log.c.seq, _log.c.entry_hash).order_by(_log.c.seq.desc()).limit(1)
        ).one_or_none()
        try:
            with session.begin_nested():
                session.execute(
                    insert(_head).values(
                        id=_HEAD_ID,
                        last_seq=last.seq if last else 0,
                        last_hash=(last.entry_hash or GENESIS_HASH) if last else GENESIS_HASH,
                        updated_at=utcnow(),
                    )
                )
        except IntegrityError:
            pass  # a concurrent writer created it first
        row = session.execute(statement).one()
    return ChainHead(int(row.last_seq), str(row.last_hash))


def read_head(session: Session) -> ChainHead:
    """The chain head as committed (no lock); seq 0 and the genesis hash for an empty log."""
    row = session.execute(
        select(_head.c.last_seq, _head.c.last_hash).where(_head.c.id == _HEAD_ID)
    ).one_or_none()
    return ChainHead(0, GENESIS_HASH) if row is None else ChainHead(int(row[0]), str(row[1]))


def chained_rows(head: ChainHead, entries: Sequence[NewEntry]) -> list[dict[str, Any]]:
    """The `access_log` rows for `entries` appended after `head`: seq, hashes and all."""
    rows: list[dict[str, Any]] = []
    prev = head.last_hash
    now = utcnow()
    for offset, entry in enumerate(entries, start=1):
        fields: dict[str, Any] = {
            "seq": head.last_seq + offset,
            "at": entry.at or now,
            "api_key_id": entry.api_key_id,
            "org_id": entry.org_id,
            "account": entry.account,
            "customer_id": entry.customer_id,
            "purpose": entry.purpose,
            "action": AccessAction(entry.action),
            "decision": AccessDecision(entry.decision),
            "reason": entry.reason,
        }
        digest = entry_hash(**fields, prev_hash=prev)
        rows.append({**fields, "prev_hash": prev, "entry_hash": digest})
        prev = digest
    return rows


def append_entries(session: Session, entries: Sequence[NewEntry]) -> list[int]:
    """Append hash-chained entries in this order, in one executemany INSERT; their seqs."""
    if not entries:
        return []
    head = lock_head(session)
    rows = chained_rows(head, entries)
    session.execute(insert(_log), rows)  # Core: a fraction of the ORM bulk insert's cost
    _move_head(session, rows[-1])
    return [row["seq"] for row in rows]


def append_entry(session: Session, entry: NewEntry) -> AccessLogEntry:
    """Append one hash-chained entry (flushed) and return it."""
    head = lock_head(session)
    (row,) = chained_rows(head, [entry])
    added = AccessLogEntry(**row)
    session.add(added)
    session.flush()
    _move_head(session, row)
    return added


def _move_head(session: Session, last: Mapping[str, Any]) -> None:
    session.execute(
        update(_head)
        .where(_head.c.id == _HEAD_ID)
        .values(last_seq=last["seq"], last_hash=last["entry_hash"], updated_at=utcnow())
    )


# --- reading the log --------------------------------------------------------------------------


def iter_entries(
    session: Session, *, from_seq: int = 1, to_seq: int | None = None, page: int = 5_000
) -> Iterator[Row[Any]]:
    """Entries with `from_seq <= seq <= to_seq` as Core rows (the `access_log` columns as
    attributes), in seq order, read a page at a time."""
    after = from_seq - 1
    while True:
        query = select(_log).where(_log.c.seq > after)
        if to_seq is not None:
            query = query.where(_log.c.seq <= to_seq)
        chunk = session.execute(query.order_by(_log.c.seq).limit(page)).all()
        if not chunk:
            return
        yield from chunk
        after = int(chunk[-1].seq)


def entry_hashes(session: Session, first_seq: int, last_seq: int) -> list[tuple[int, str | None]]:
    """`(seq, entry_hash)` of the entries in a range, in seq order."""
    rows = session.execute(
        select(AccessLogEntry.seq, AccessLogEntry.entry_hash)
        .where(AccessLogEntry.seq >= first_seq, AccessLogEntry.seq <= last_seq)
        .order_by(AccessLogEntry.seq)
    ).all()
    return [(seq, digest) for seq, digest in rows]


def get_entry(session: Session, seq: int) -> AccessLogEntry | None:
    return session.get(AccessLogEntry, seq)


def entries_linking_to(session: Session, prev_hash: str) -> Sequence[AccessLogEntry]:
    """Entries whose `prev_hash` is `prev_hash` (normally exactly one; used to explain a break)."""
    return session.scalars(
        select(AccessLogEntry).where(AccessLogEntry.prev_hash == prev_hash).limit(10)
    ).all()


def log_page(
    session: Session, *, customer_id: str | None, from_seq: int, limit: int
) -> Sequence[AccessLogEntry]:
    """Up to `limit` entries from `from_seq` on, optionally of one customer, in seq order."""
    query = select(AccessLogEntry).where(AccessLogEntry.seq >= from_seq)
    if customer_id is not None:
        query = query.where(AccessLogEntry.customer_id == customer_id)
    return session.scalars(query.order_by(AccessLogEntry.seq).limit(limit)).all()


def count_entries(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(_log)) or 0)


# --- batches ---------------------------------------------------------------------------------


def live_batches(session: Session) -> Sequence[AuditBatch]:
    """Batches that have not failed (pending or anchored), by first entry."""
    return session.scalars(
        select(AuditBatch)
        .where(AuditBatch.status != AuditBatchStatus.FAILED)
        .order_by(AuditBatch.first_seq)
    ).all()


def batches(session: Session, *, status: AuditBatchStatus | None = None) -> Sequence[AuditBatch]:
    query = select(AuditBatch).order_by(AuditBatch.id)
    if status is not None:
        query = query.where(AuditBatch.status == status)
    return session.scalars(query).all()


def batch_of(session: Session, seq: int) -> AuditBatch | None:
    """The anchored batch holding entry `seq`, else the pending one, else None."""
    found = session.scalars(
        select(AuditBatch).where(
            AuditBatch.first_seq <= seq,
            AuditBatch.last_seq >= seq,
            AuditBatch.status != AuditBatchStatus.FAILED,
        )
    ).all()
    anchored = [b for b in found if b.status is AuditBatchStatus.ANCHORED]
    candidates = anchored or list(found)
    return candidates[0] if candidates else None


def anchored_ranges(session: Session, seqs: Sequence[int]) -> dict[int, AuditBatch]:
    """For each of `seqs` in an anchored batch, that batch."""
    if not seqs:
        return {}
    rows = session.scalars(
        select(AuditBatch)
        .where(
            AuditBatch.status == AuditBatchStatus.ANCHORED,
            AuditBatch.last_seq >= min(seqs),
            AuditBatch.first_seq <= max(seqs),
        )
        .order_by(AuditBatch.first_seq)
    ).all()
    found: dict[int, AuditBatch] = {}
    for seq in seqs:
        for batch in rows:
            if batch.first_seq <= seq <= batch.last_seq:
                found[seq] = batch
                break
    return found


def mined_times(session: Session, tx_hashes: Sequence[str]) -> dict[str, datetime]:
    """When this gateway saw each of its own transactions mined (by tx hash), to the microsecond
    and on the same clock as the access log (block timestamps are whole seconds, and a
    development chain's run ahead of the wall clock)."""
    found: dict[str, datetime] = {}
    unique = sorted({h.lower() for h in tx_hashes})
    for start in range(0, len(unique), 500):
        rows = session.execute(
            select(ChainTransaction.tx_hash, ChainTransaction.mined_at).where(
                ChainTransaction.tx_hash.in_(unique[start : start + 500]),
                ChainTransaction.mined_at.is_not(None),
            )
        ).all()
        found.update({tx_hash.lower(): mined_at for tx_hash, mined_at in rows if mined_at})
    return found
