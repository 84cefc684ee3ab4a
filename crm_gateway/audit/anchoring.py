"""Anchor the access log on-chain: Merkle roots of new entries, one outbox write per batch.

`Anchorer.anchor(sender)` takes the entries not yet in a batch (from one past the last batch
that has not failed, up to the chain head), re-checks their hashes and links (a broken chain is
never anchored), cuts them into batches of at most `batch_size` entries, and for each batch
commits, in one database transaction, an `audit_batches` row and ONE outbox write
`AuditAnchor.anchor(root, first, last, count)` signed by `sender` (an AUDITOR of the gateway's
organisation). `refresh()` settles pending batches from their operations: the contract's batch
id (from the BatchAnchored event), transaction, block and gas once confirmed; failed batches are
marked so, and their entries go into the next batch. Batches that were queued after a failed one
fail too (the contract wants contiguous batches); anchoring waits until they have settled.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eth_utils.address import to_checksum_address
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.audit.merkle import MerkleTree
from crm_gateway.audit.verify import ChainWalker
from crm_gateway.chain.contracts import Contracts
from crm_gateway.pipeline.outbox import ChainWrite, enqueue, request_fingerprint
from crm_gateway.pipeline.worker import PipelineWorker
from crm_gateway.services.access import AccessService, Role
from crm_gateway.services.errors import ConflictError, PermissionDeniedError
from crm_gateway.store import audit as log_store
from crm_gateway.store.models import (
    AuditBatch,
    AuditBatchStatus,
    ChainTransaction,
    Operation,
    OperationStatus,
    utcnow,
)

ANCHOR_CONTRACT = "AuditAnchor"
DEFAULT_BATCH_SIZE = 10_000
MAX_BATCH_SIZE = 65_536
_CACHED_TREES = 4


class AuditChainBroken(ConflictError):
    """The log fails its own checks: it is not anchored until that is explained."""


@dataclass(frozen=True)
class BatchView:
    """An anchoring batch as the API and the CLI show it."""

    id: int
    first_seq: int
    last_seq: int
    count: int
    root: str
    status: str
    operation_id: str
    contract: str
    chain_batch_id: int | None
    tx_hash: str | None
    block_number: int | None
    block_hash: str | None
    gas_used: int | None
    error: str | None
    created_at: datetime
    anchored_at: datetime | None

    @classmethod
    def of(cls, batch: AuditBatch) -> BatchView:
        return cls(
            id=batch.id,
            first_seq=batch.first_seq,
            last_seq=batch.last_seq,
            count=batch.count,
            root=batch.root,
            status=AuditBatchStatus(batch.status).value,
            operation_id=batch.operation_id,
            contract=batch.contract,
            chain_batch_id=batch.chain_batch_id,
            tx_hash=batch.tx_hash,
            block_number=batch.block_number,
            block_hash=batch.block_hash,
            gas_used=batch.gas_used,
            error=batch.error,
            created_at=batch.created_at,
            anchored_at=batch.anchored_at,
        )


class Anchorer:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        contracts: Contracts,
        pipeline: PipelineWorker | None,
        org_id: int,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"the batch size must be between 1 and {MAX_BATCH_SIZE}")
        self._sessions = sessions
        self._contracts = contracts
        self._pipeline = pipeline
        self._org_id = org_id
        self._batch_size = batch_size
        # One anchoring run at a time in this process (the worker, a request, a command); other
        # processes are kept out by the unique first entry of live batches.
        self._lock = threading.Lock()
        self._trees: OrderedDict[tuple[int, str], MerkleTree] = OrderedDict()
        self._trees_lock = threading.Lock()

    @property
    def deployed(self) -> bool:
        return self._contracts.record.address_of(ANCHOR_CONTRACT) is not None

    # --- settling -------------------------------------------------------------------------

    def refresh(self) -> list[BatchView]:
        """Settle pending batches from their operations; the batches that changed."""
        changed: list[BatchView] = []
        with self._sessions() as session:
            pending = log_store.batches(session, status=AuditBatchStatus.PENDING)
            for batch in pending:
                operation = session.scalars(
                    select(Operation).where(Operation.id == batch.operation_id)
                ).one()
                if operation.status is OperationStatus.CONFIRMED:
                    self._settle_confirmed(session, batch, operation)
                elif operation.status is OperationStatus.FAILED:
                    batch.status = AuditBatchStatus.FAILED
                    batch.error = _error_text(operation)
                else:
                    continue
                changed.append(BatchView.of(batch))
            session.commit()
        return changed

    @staticmethod
    def _settle_confirmed(session: Session, batch: AuditBatch, operation: Operation) -> None:
        events = [
            event
            for event in (operation.result or {}).get("events", [])
            if event.get("event") == "BatchAnchored"
        ]
        tx = session.get(ChainTransaction, operation.chain_tx_id) if operation.chain_tx_id else None
        if len(events) != 1:
            batch.status = AuditBatchStatus.FAILED
            batch.error = "the anchoring transaction emitted no BatchAnchored event"
            return
        args: dict[str, Any] = events[0]["args"]
        if (str(args["root"]).lower(), int(args["firstSeq"]), int(args["lastSeq"])) != (
            batch.root.lower(),
            batch.first_seq,
            batch.last_seq,
        ):
            batch.status = AuditBatchStatus.FAILED
            batch.error = "the anchored batch does not match the one queued"
            return
        batch.status = AuditBatchStatus.ANCHORED
        batch.chain_batch_id = int(args["batchId"])
        if tx is not None:
            batch.tx_hash = tx.tx_hash
            batch.block_number = tx.block_number
            batch.block_hash = tx.block_hash
            batch.gas_used = tx.gas_used
            batch.anchored_at = tx.mined_at or utcnow()
        else:
            batch.anchored_at = utcnow()

    # --- anchoring ------------------------------------------------------------------------

    def anchor(self, sender: str, *, api_key_id: str | None = None) -> list[BatchView]:
        """Queue batches for every entry not yet in one; the new batches (none: nothing new, or
        a batch after a failed one is still settling)."""
        sender = to_checksum_address(sender)
        with self._lock:
            self.refresh()
            with self._sessions() as session:
                start = _next_seq(session)
                head = log_store.read_head(session)
                if start is None or start > head.last_seq:
                    return []
                self._require_auditor(sender)
                self._require_chain_agrees(session, start)
                prev_hash = log_store.GENESIS_HASH
                if start > 1:
                    previous = log_store.get_entry(session, start - 1)
                    prev_hash = str(previous.entry_hash) if previous else ""
            created: list[BatchView] = []
            first = start
            while first <= head.last_seq:
                last = min(head.last_seq, first + self._batch_size - 1)
                tree, prev_hash = self._checked_tree(first, last, prev_hash)
                view = self._queue(first, last, tree, sender, api_key_id)
                if view is None:
                    break  # another process anchored this range first
                created.append(view)
                first = last + 1
            if created and self._pipeline is not None:
                self._pipeline.wake()
            return created

    def _require_auditor(self, sender: str) -> None:
        access = AccessService(self._contracts)
        if not access.has_role(Role.AUDITOR, sender) or access.organization_of(sender) != (
            self._org_id
        ):
            raise PermissionDeniedError(
                f"account {sender} does not hold AUDITOR in organisation {self._org_id}, "
                "so it cannot anchor this organisation's access log",
                required_role=Role.AUDITOR.value,
            )

    def _require_chain_agrees(self, session: Session, start: int) -> None:
        """With no batch in flight, the chain must expect exactly `start` next."""
        if any(b.status is AuditBatchStatus.PENDING for b in log_store.live_batches(session)):
            return
        anchor = self._contracts[ANCHOR_CONTRACT]
        on_chain = int(anchor.functions.lastAnchoredSeq(self._org_id).call())
        if on_chain > start - 1:
            # A batch this gateway never queued runs ahead of the log (a misbehaving AUDITOR):
            # the organisation's ORG_ADMIN supersedes it, and anchoring goes on from `start`.
            latest = int(anchor.functions.lastBatchOf(self._org_id).call())
            raise ConflictError(
                f"the chain has anchored organisation {self._org_id}'s access log up to entry "
                f"{on_chain}, ahead of the log (entry {start - 1}): batch {latest} was not "
                f"anchored by this gateway; an ORG_ADMIN supersedes it with "
                f"`crm-chaincode audit supersede {latest}`",
                batch_id=latest,
                chain_last_seq=on_chain,
            )
        if on_chain != start - 1:
            raise ConflictError(
                f"the chain has anchored organisation {self._org_id}'s access log up to entry "
                f"{on_chain}, the database up to entry {start - 1}: was one of them restored "
                "or reset?"
            )

    def _checked_tree(self, first: int, last: int, prev_hash: str) -> tuple[MerkleTree, str]:
        """The tree over entries `first..last`, after checking their hashes and links."""
        with self._sessions() as session:
            walker = ChainWalker(
                linking_to=lambda h: log_store.entries_linking_to(session, h),
                next_seq=first,
                prev_hash=prev_hash,
            )
            leaves: list[tuple[int, bytes]] = []
            for row in log_store.iter_entries(session, from_seq=first, to_seq=last):
                problem = walker.feed(row)
                if problem is not None:
                    raise AuditChainBroken(f"not anchoring the access log: {problem.message}")
                leaves.append((int(row.seq), bytes.fromhex(str(row.entry_hash))))
            if walker.next_seq != last + 1:
                missing = walker.next_seq
                raise AuditChainBroken(
                    f"not anchoring the access log: entry {missing} was removed "
                    f"(the chain head is at entry {last} or later)"
                )
        return MerkleTree.of_entries(leaves), walker.prev_hash

    def _queue(
        self, first: int, last: int, tree: MerkleTree, sender: str, api_key_id: str | None
    ) -> BatchView | None:
        root = "0x" + tree.root.hex()
        count = last - first + 1
        write = ChainWrite(
            "audit.anchor", ANCHOR_CONTRACT, "anchor", [root, first, last, count], sender
        )
        contract = self._contracts[ANCHOR_CONTRACT].address
        with self._sessions() as session:
            try:
                operation, _created = enqueue(
                    session,
                    write,
                    api_key_id=api_key_id,
                    idempotency_key=None,
                    request_hash=request_fingerprint({"kind": write.kind, "payload": write.args}),
                )
                batch = AuditBatch(
                    first_seq=first,
                    last_seq=last,
                    count=count,
                    root=root,
                    org_id=self._org_id,
                    contract=contract,
                    operation_id=operation.id,
                    status=AuditBatchStatus.PENDING,
                )
                session.add(batch)
                session.commit()
            except IntegrityError:
                session.rollback()
                return None
            return BatchView.of(batch)

    # --- superseding a bogus batch ---------------------------------------------------------

    def supersede(self, sender: str, batch_id: int) -> ChainWrite:
        """The write by which an ORG_ADMIN of this organisation supersedes its latest batch on
        the chain (`AuditAnchor.supersedeBatch`): one this gateway did not queue, since a batch
        of its own matches the log. Refused here when it is one of this gateway's anchored
        batches, or the sender is not an ORG_ADMIN of the organisation."""
        sender = to_checksum_address(sender)
        access = AccessService(self._contracts)
        if not access.has_role(Role.ORG_ADMIN, sender) or access.organization_of(sender) != (
            self._org_id
        ):
            raise PermissionDeniedError(
                f"account {sender} does not hold ORG_ADMIN in organisation {self._org_id}",
                required_role=Role.ORG_ADMIN.value,
            )
        with self._sessions() as session:
            ours = session.scalars(
                select(AuditBatch).where(
                    AuditBatch.chain_batch_id == batch_id,
                    AuditBatch.status == AuditBatchStatus.ANCHORED,
                )
            ).first()
        if ours is not None:
            raise ConflictError(
                f"batch {batch_id} anchors entries {ours.first_seq}..{ours.last_seq} of this "
                "gateway's log: it is not superseded"
            )
        return ChainWrite("audit.supersede", ANCHOR_CONTRACT, "supersedeBatch", [batch_id], sender)

    # --- reading --------------------------------------------------------------------------

    def batches(self) -> list[BatchView]:
        with self._sessions() as session:
            return [BatchView.of(b) for b in log_store.batches(session)]

    def tree(self, batch: BatchView) -> MerkleTree | None:
        """The tree over a batch's entries as they are stored now (None if some are missing);
        the last few are kept, so proofs of one batch do not rebuild it every time."""
        key = (batch.id, batch.root)
        with self._trees_lock:
            cached = self._trees.get(key)
            if cached is not None:
                self._trees.move_to_end(key)
                return cached
        with self._sessions() as session:
            rows = log_store.entry_hashes(session, batch.first_seq, batch.last_seq)
        if len(rows) != batch.count or any(digest is None for _seq, digest in rows):
            return None
        tree = MerkleTree.of_entries((seq, bytes.fromhex(str(digest))) for seq, digest in rows)
        with self._trees_lock:
            self._trees[key] = tree
            while len(self._trees) > _CACHED_TREES:
                self._trees.popitem(last=False)
        return tree


def _next_seq(session: Session) -> int | None:
    """One past the last batch that has not failed, if the live batches are contiguous from 1;
    None while a live batch sits beyond a failed one (it will fail too: wait for it)."""
    expected = 1
    for batch in log_store.live_batches(session):
        if batch.first_seq != expected:
            return None
        expected = batch.last_seq + 1
    return expected


def _error_text(operation: Operation) -> str:
    name = operation.error_name or "failed"
    args = operation.error_args or {}
    return f"{name} {args}"[:200] if args else name
