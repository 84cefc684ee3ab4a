"""Check the access log: every entry's hash, every link, every anchored batch against the chain.

`LogVerifier.verify` walks the log in seq order and stops at the FIRST problem, which it names in
one sentence:

* an entry whose contents no longer match its hash: **altered** (or, when its contents hash
  correctly at the position of another entry that hashes correctly at its own, **swapped** with
  that entry; when only that other entry belongs here, **moved**);
* a number missing from the sequence (or the log ending before its chain head, or before what the
  chain has anchored): **removed**;
* an entry that hashes correctly but that the next entry does not link to: **altered and
  re-hashed**;
* an anchored batch whose root in the database is not the root on-chain: **root edited**; whose
  entries, each consistent, no longer produce the root on-chain: the log was **rewritten** from
  within that batch on (only the anchor can tell: an attacker who re-hashes everything after an
  entry leaves a consistent chain behind).

`ChainWalker` is the entry-by-entry part, also used by the anchorer before it commits a range.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.orm import Session, sessionmaker
from web3.contract import Contract

from crm_gateway.audit.merkle import MerkleTree
from crm_gateway.chain.calls import call_many
from crm_gateway.store import audit as log_store
from crm_gateway.store.models import AuditBatch, AuditBatchStatus

ProblemKind = Literal[
    "altered", "removed", "swapped", "moved", "rehashed", "root_edited", "rewritten", "anchor"
]


@dataclass(frozen=True)
class Problem:
    """The first thing found wrong: the entry (or first entry of the batch) it concerns, and one
    sentence naming it."""

    kind: ProblemKind
    seq: int
    message: str


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    batches: int
    problem: Problem | None

    @property
    def intact(self) -> bool:
        return self.problem is None

    @property
    def summary(self) -> str:
        if self.problem is not None:
            return self.problem.message
        return f"intact: {self.entries} entries, {self.batches} batches anchored"


def _removed(first: int, last: int, why: str) -> Problem:
    what = f"entry {first} was" if first == last else f"entries {first} to {last} were"
    return Problem("removed", first, f"{what} removed: {why}")


class ChainWalker:
    """Feed entries (rows with the `access_log` columns) in seq order; `feed` returns the first
    problem. `linking_to(prev_hash)` finds the rows whose `prev_hash` is given (to tell a swap
    from an alteration)."""

    def __init__(
        self,
        *,
        linking_to: Callable[[str], Sequence[Any]],
        next_seq: int = 1,
        prev_hash: str = log_store.GENESIS_HASH,
    ) -> None:
        self.linking_to = linking_to
        self.next_seq = next_seq
        self.prev_hash = prev_hash
        self.count = 0

    def feed(self, row: Any) -> Problem | None:
        seq = int(row.seq)
        expected = self.next_seq
        if seq > expected:
            before = f"entry {expected - 1}" if expected > 1 else "the start of the log"
            return _removed(expected, seq - 1, f"entry {seq} does not link to {before}")
        if row.entry_hash != log_store.recompute_hash(row):
            return self._explain_mismatch(row)
        if row.prev_hash != self.prev_hash:
            if seq == 1:
                return Problem(
                    "altered", 1, "entry 1 was altered: it does not start from the genesis hash"
                )
            return Problem(
                "rehashed",
                seq - 1,
                f"entry {seq - 1} was altered and re-hashed: entry {seq} no longer links to it",
            )
        self.prev_hash = str(row.entry_hash)
        self.next_seq = seq + 1
        self.count += 1
        return None

    def _explain_mismatch(self, row: Any) -> Problem:
        seq = int(row.seq)
        for other in self.linking_to(self.prev_hash):
            there = int(other.seq)
            if there == seq or other.entry_hash != log_store.recompute_hash(other, seq=seq):
                continue
            # `other` is the entry that belongs here, found at position `there`.
            if row.entry_hash == log_store.recompute_hash(row, seq=there):
                low, high = sorted((seq, there))
                return Problem(
                    "swapped",
                    low,
                    f"entries {low} and {high} were swapped: each holds the other's contents",
                )
            return Problem(
                "moved", seq, f"entry {seq} was moved: its contents are now at position {there}"
            )
        return Problem(
            "altered", seq, f"entry {seq} was altered: its contents no longer match its hash"
        )


@dataclass(frozen=True)
class OnChainBatch:
    root: str
    org_id: int
    first_seq: int
    last_seq: int


def on_chain_batches(anchor: Contract, batch_ids: Sequence[int]) -> dict[int, OnChainBatch | None]:
    """The contract's record of each batch id (None for an id it does not know)."""
    if not batch_ids:
        return {}
    known = int(anchor.functions.batchCount().call())
    present = [i for i in batch_ids if 1 <= i <= known]
    found: dict[int, OnChainBatch | None] = dict.fromkeys(batch_ids)
    results = call_many(anchor.w3, anchor, "batch", [(i,) for i in present])
    for batch_id, (record,) in zip(present, results, strict=True):
        root, org_id, first, last, _count, _block = record
        found[batch_id] = OnChainBatch("0x" + bytes(root).hex(), int(org_id), int(first), int(last))
    return found


class LogVerifier:
    """Verify the whole access log and its anchors (`anchor` None: the hash chain only)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        anchor: Contract | None,
        org_id: int,
        page: int = 5_000,
    ) -> None:
        self._sessions = sessions
        self._anchor = anchor
        self._org_id = org_id
        self._page = page

    def verify(self, on_progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Walk everything; `on_progress(entries_checked, total)` now and then."""
        with self._sessions() as session:
            head = log_store.read_head(session)
            anchored = [
                b
                for b in log_store.batches(session, status=AuditBatchStatus.ANCHORED)
                if b.chain_batch_id is not None
            ]
            anchored.sort(key=lambda b: b.first_seq)
            records, chain_last = self._check_batch_records(anchored)
            walker = ChainWalker(
                linking_to=lambda h: log_store.entries_linking_to(session, h),
            )
            pending = list(anchored)
            leaves: list[tuple[int, bytes]] = []
            for row in log_store.iter_entries(session, page=self._page):
                problem = walker.feed(row)
                if problem is not None:
                    return VerifyReport(walker.count, len(anchored), problem)
                if pending and pending[0].first_seq <= row.seq <= pending[0].last_seq:
                    leaves.append((int(row.seq), bytes.fromhex(str(row.entry_hash))))
                    if row.seq == pending[0].last_seq:
                        batch = pending.pop(0)
                        problem = records.get(batch.id) or self._check_root(batch, leaves)
                        if problem is not None:
                            return VerifyReport(walker.count, len(anchored), problem)
                        leaves = []
                if on_progress is not None and walker.count % self._page == 0:
                    on_progress(walker.count, head.last_seq)
            last = walker.next_seq - 1
            if on_progress is not None:
                on_progress(walker.count, head.last_seq)
            problem = self._check_end(last, walker.prev_hash, head, pending, chain_last)
            return VerifyReport(walker.count, len(anchored), problem)

    def _check_batch_records(self, anchored: list[AuditBatch]) -> tuple[dict[int, Problem], int]:
        """What is wrong with each anchored batch's record, compared with the chain's (by the
        batch's row id; reported once the walk reaches the batch's last entry), and the last
        entry the chain has anchored for this organisation."""
        if self._anchor is None:
            return {}, 0
        chain = on_chain_batches(self._anchor, [int(b.chain_batch_id or 0) for b in anchored])
        problems: dict[int, Problem] = {}
        expected = 1
        for batch in anchored:
            record = chain[int(batch.chain_batch_id or 0)]
            name = f"batch {batch.chain_batch_id} (entries {batch.first_seq} to {batch.last_seq})"
            if batch.first_seq != expected:
                problems[batch.id] = Problem(
                    "anchor",
                    expected,
                    f"no anchored batch in the database covers entries {expected} to "
                    f"{batch.first_seq - 1}, which come before {name}",
                )
            elif record is None:
                problems[batch.id] = Problem(
                    "anchor",
                    batch.first_seq,
                    f"{name} is not on-chain, although the database records it as anchored "
                    f"in transaction {batch.tx_hash}",
                )
            elif (record.org_id, record.first_seq, record.last_seq) != (
                self._org_id,
                batch.first_seq,
                batch.last_seq,
            ):
                problems[batch.id] = Problem(
                    "anchor",
                    batch.first_seq,
                    f"{name} was edited in the database: on-chain it holds organisation "
                    f"{record.org_id}'s entries {record.first_seq} to {record.last_seq}",
                )
            elif record.root != batch.root.lower():
                problems[batch.id] = Problem(
                    "root_edited",
                    batch.first_seq,
                    f"the root of {name} was edited in the database: it reads {batch.root}, "
                    f"but the chain anchored {record.root} in transaction {batch.tx_hash}",
                )
            expected = batch.last_seq + 1
        return problems, int(self._anchor.functions.lastAnchoredSeq(self._org_id).call())

    @staticmethod
    def _check_root(batch: AuditBatch, leaves: list[tuple[int, bytes]]) -> Problem | None:
        if MerkleTree.of_entries(leaves).root.hex() == batch.root.lower().removeprefix("0x"):
            return None
        return Problem(
            "rewritten",
            batch.first_seq,
            f"entries {batch.first_seq} to {batch.last_seq} no longer match the root of batch "
            f"{batch.chain_batch_id} anchored in transaction {batch.tx_hash}: the log was "
            "rewritten and re-hashed within that batch",
        )

    @staticmethod
    def _check_end(
        last: int,
        last_hash: str,
        head: log_store.ChainHead,
        pending: list[AuditBatch],
        chain_last: int,
    ) -> Problem | None:
        ends = f"the log ends at entry {last}" if last else "the log is empty"
        if head.last_seq > last:
            return _removed(
                last + 1, head.last_seq, f"{ends}, its chain head at entry {head.last_seq}"
            )
        if pending:
            batch = pending[0]
            return _removed(
                last + 1,
                batch.last_seq,
                f"{ends}, but batch {batch.chain_batch_id} anchored entries up to {batch.last_seq}",
            )
        if chain_last > last:
            return _removed(
                last + 1, chain_last, f"{ends}, but the chain anchored it up to {chain_last}"
            )
        if last and head.last_seq == last and head.last_hash != last_hash:
            return Problem(
                "rehashed",
                last,
                f"entry {last} was altered and re-hashed: the chain head records another hash",
            )
        return None
