"""Record receipts, settle operations, and re-broadcast what a node lost.

A transaction is watched until it is *final*: seen mined, and still mined with the same block hash
at least `finality_seconds` later. That covers an Anvil node killed with SIGKILL, which forgets
the blocks after its last state dump: a transaction it forgot loses its receipt, goes back to
`sent`, and its operations back to `submitted`, and the same signed bytes are broadcast again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from eth_typing import HexStr
from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session, defer, sessionmaker
from web3 import HTTPProvider, Web3
from web3.exceptions import BlockNotFound, TransactionNotFound
from web3.types import RPCEndpoint, TxParams

from crm_gateway.chain.calls import batch_requester
from crm_gateway.chain.contracts import Contracts
from crm_gateway.pipeline.batching import batcher_for
from crm_gateway.pipeline.compensation import compensate_failed
from crm_gateway.pipeline.nonces import NonceAllocator
from crm_gateway.pipeline.sender import TRANSIENT_ERRORS, broadcast
from crm_gateway.store.models import (
    ChainTransaction,
    ChainTransactionStatus,
    Operation,
    OperationStatus,
)

log = logging.getLogger(__name__)


class Watcher:
    def __init__(
        self,
        *,
        contracts: Contracts,
        session_factory: sessionmaker[Session],
        nonces: NonceAllocator,
        resubmit_after_seconds: float,
        finality_seconds: float,
    ) -> None:
        self._contracts = contracts
        self._sessions = session_factory
        self._nonces = nonces
        self._resubmit_after = timedelta(seconds=resubmit_after_seconds)
        self._finality = timedelta(seconds=finality_seconds)

    def run_once(self) -> int:
        """Check every unsettled transaction once; return how many changed state."""
        changed = 0
        with self._sessions() as session:
            txs = list(
                session.scalars(
                    select(ChainTransaction)
                    # The signed bytes (tens of kilobytes for a batch) only when resending.
                    .options(defer(ChainTransaction.raw_tx))
                    .where(
                        or_(
                            ChainTransaction.status == ChainTransactionStatus.SENT,
                            ChainTransaction.finalized_at.is_(None),
                        ),
                        ChainTransaction.status != ChainTransactionStatus.DROPPED,
                    )
                    .order_by(ChainTransaction.sender, ChainTransaction.nonce)
                )
            )
            canonical = self._block_hashes(
                {
                    tx.block_number
                    for tx in txs
                    if tx.status != ChainTransactionStatus.SENT and tx.block_number is not None
                }
            )
            for tx in txs:
                try:
                    if self._check(session, tx, canonical):
                        changed += 1
                except TRANSIENT_ERRORS as exc:
                    log.warning("chain unreachable while watching: %s", exc)
                    break
                finally:
                    session.commit()
        return changed

    def _check(
        self, session: Session, tx: ChainTransaction, canonical: dict[int, str | None]
    ) -> bool:
        w3 = self._contracts.chain.w3
        now = datetime.now(UTC)
        if tx.status != ChainTransactionStatus.SENT and tx.block_number is not None:
            # Mined and recorded, waiting to become final: while the chain still has the block
            # it was mined in, it is still there (a block's hash commits to its transactions).
            # One header per block and round, rather than the whole receipt of every
            # transaction (a batch's receipt holds a hundred logs) every round.
            if tx.block_number not in canonical:
                canonical[tx.block_number] = self._block_hash(tx.block_number)
            if canonical[tx.block_number] == tx.block_hash:  # lower-case hex, both
                if tx.mined_at is not None and now - tx.mined_at >= self._finality:
                    tx.finalized_at = now
                    return True
                return False
        receipt = self._receipt(tx.tx_hash)
        if receipt is not None:
            block_hash = receipt["blockHash"]
            if tx.status == ChainTransactionStatus.SENT or tx.block_hash != block_hash:
                self._record_receipt(session, tx, receipt, block_hash, now)
                return True
            if tx.mined_at is not None and now - tx.mined_at >= self._finality:
                tx.finalized_at = now
                return True
            return False

        if tx.status != ChainTransactionStatus.SENT:
            # It was mined, and the node no longer knows it: its blocks were lost.
            log.warning("transaction %s vanished from the chain; sending it again", tx.tx_hash)
            tx.status = ChainTransactionStatus.SENT
            tx.block_number = tx.block_hash = tx.gas_used = None
            tx.mined_at = None
            for operation in _operations_of(session, tx):
                operation.status = OperationStatus.SUBMITTED
                operation.updated_at = now
            self._nonces.forget(tx.sender)
            broadcast(w3, session, tx)
            return True

        # Not seen mined yet: give its last broadcast time to land. A transaction recorded but
        # not yet broadcast (the sender commits it first) counts from its recording: checked at
        # once, a node whose nonce count already includes it while its receipt is not served
        # yet (Anvil, right after mining) made it look dropped.
        if now - (tx.last_sent_at or tx.created_at) < self._resubmit_after:
            return False
        mined_count = int(
            w3.eth.get_transaction_count(Web3.to_checksum_address(tx.sender), "latest")
        )
        if mined_count > tx.nonce:
            # Check again: the receipt may have appeared between the two calls.
            try:
                w3.eth.get_transaction_receipt(HexStr(tx.tx_hash))
                return False
            except TransactionNotFound:
                pass
            log.error("nonce %s of %s was used by another transaction", tx.nonce, tx.sender)
            tx.status = ChainTransactionStatus.DROPPED
            for operation in _operations_of(session, tx):
                _settle(
                    session, operation, OperationStatus.FAILED, now, error=("NonceConsumed", {})
                )
            return True
        broadcast(w3, session, tx)
        return True

    def _receipt(self, tx_hash: str) -> dict[str, Any] | None:
        """A transaction's receipt (None while there is none): `blockHash` as lower-case hex,
        `blockNumber`, `gasUsed` and `status` as integers, and its `logs`.

        Over HTTP the node's JSON is used as it is: web3's formatting of a receipt with a
        hundred logs (a batch of consent changes) takes longer than fetching it.
        """
        w3 = self._contracts.chain.w3
        if isinstance(w3.provider, HTTPProvider):
            answer: Any = w3.provider.make_request(
                RPCEndpoint("eth_getTransactionReceipt"), [tx_hash]
            )
            if "error" not in answer:
                raw = answer.get("result")
                if raw is None:
                    return None
                return {
                    "blockHash": str(raw["blockHash"]).lower(),
                    "blockNumber": int(raw["blockNumber"], 16),
                    "gasUsed": int(raw["gasUsed"], 16),
                    "status": int(raw["status"], 16),
                    "logs": raw["logs"],
                }
        try:
            receipt: Any = w3.eth.get_transaction_receipt(HexStr(tx_hash))
        except TransactionNotFound:
            return None
        return {
            "blockHash": "0x" + bytes(receipt["blockHash"]).hex(),
            "blockNumber": int(receipt["blockNumber"]),
            "gasUsed": int(receipt["gasUsed"]),
            "status": int(receipt["status"]),
            "logs": receipt["logs"],
        }

    def _block_hashes(self, numbers: set[int]) -> dict[int, str | None]:
        """The hash of each of the chain's blocks `numbers` now (None for a block it lacks), in
        one JSON-RPC batch where the provider takes batches."""
        ordered = sorted(numbers)
        batch = batch_requester(self._contracts.chain.w3)
        if ordered and batch is not None:
            answers = batch(
                [(RPCEndpoint("eth_getBlockByNumber"), [hex(number), False]) for number in ordered]
            )
            if isinstance(answers, list) and len(answers) == len(ordered):
                return {
                    number: (str(answer["result"]["hash"]) if answer.get("result") else None)
                    for number, answer in zip(ordered, answers, strict=True)
                }
        return {number: self._block_hash(number) for number in ordered}

    def _block_hash(self, number: int) -> str | None:
        """The hash of the chain's block `number` now (None if it has no such block)."""
        try:
            block: Any = self._contracts.chain.w3.eth.get_block(number)
        except BlockNotFound:
            return None
        return "0x" + bytes(block["hash"]).hex()

    def _record_receipt(
        self,
        session: Session,
        tx: ChainTransaction,
        receipt: dict[str, Any],
        block_hash: str,
        now: datetime,
    ) -> None:
        tx.block_number = int(receipt["blockNumber"])
        tx.block_hash = block_hash
        tx.gas_used = int(receipt["gasUsed"])
        tx.mined_at = now
        tx.finalized_at = None
        succeeded = int(receipt["status"]) == 1
        tx.status = ChainTransactionStatus.MINED if succeeded else ChainTransactionStatus.FAILED
        operations = _operations_of(session, tx)
        if not succeeded:
            error = self._revert_reason(tx)
            for operation in operations:
                _settle(session, operation, OperationStatus.FAILED, now, error=error)
            return
        events = self._contracts.decode_receipt(receipt)
        batcher = (
            batcher_for(operations[0].contract, operations[0].function) if operations else None
        )
        if batcher is None or len(operations) == 1:
            for operation in operations:
                _settle(
                    session, operation, OperationStatus.CONFIRMED, now, result={"events": events}
                )
            return
        decoder = self._contracts.artifacts.error_decoder
        for operation in operations:
            confirmed, refusal, own = batcher.outcome(operation.args, events, decoder)
            if confirmed:
                _settle(session, operation, OperationStatus.CONFIRMED, now, result={"events": own})
            else:
                _settle(session, operation, OperationStatus.FAILED, now, error=refusal)

    def _revert_reason(self, tx: ChainTransaction) -> tuple[str, dict[str, Any]]:
        """Replay a reverted transaction against the state before its block to learn why."""
        w3 = self._contracts.chain.w3
        original: Any = w3.eth.get_transaction(HexStr(tx.tx_hash))
        call: TxParams = {"from": original["from"], "to": original["to"], "data": original["input"]}
        try:
            w3.eth.call(call, max(int(tx.block_number or 1) - 1, 0))
        except Exception as exc:
            revert = self._contracts.artifacts.error_decoder.decode_exception(exc)
            if revert is not None:
                return revert.name, revert.args
        return "Reverted", {}


def _operations_of(session: Session, tx: ChainTransaction) -> list[Operation]:
    return list(
        session.scalars(
            select(Operation).where(Operation.chain_tx_id == tx.id).order_by(Operation.seq)
        )
    )


def _settle(
    session: Session,
    operation: Operation,
    status: OperationStatus,
    now: datetime,
    *,
    result: dict[str, Any] | None = None,
    error: tuple[str, dict[str, Any]] | None = None,
) -> None:
    """Settle an operation of a transaction, once: only while it is still submitted in that
    transaction (another watcher that settled it first wins); a failure undoes its off-chain
    part in the same database transaction."""
    values: dict[str, Any] = {"status": status, "updated_at": now, "result": result}
    if error is not None:
        values["error_name"], values["error_args"] = error
    mine = (Operation.seq == operation.seq, Operation.chain_tx_id == operation.chain_tx_id)
    settled = _rows(
        session.execute(
            update(Operation)
            .where(*mine, Operation.status == OperationStatus.SUBMITTED)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    )
    if settled == 0:
        # Settled already (by another watcher, or before its block was replaced by another
        # with the same transaction): the same outcome is recorded again, nothing undone twice.
        _rows(
            session.execute(
                update(Operation)
                .where(*mine, Operation.status == status)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        )
    session.refresh(operation)
    if settled == 1 and status is OperationStatus.FAILED:
        compensate_failed(session, operation)


def _rows(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
