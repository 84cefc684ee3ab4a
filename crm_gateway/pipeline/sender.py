"""Take pending outbox rows in order, simulate, sign locally and submit them.

The signed transaction is committed to the database *before* it is broadcast, so a crash at any
point leaves either nothing sent (the row is still pending and is taken again) or a signed
transaction on record that the watcher re-broadcasts. Re-broadcasting the same signed bytes can
never execute twice: the nonce admits exactly one of them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from requests.exceptions import ConnectionError as RequestsConnectionError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from web3.exceptions import Web3Exception

from crm_gateway.chain.contracts import Contracts
from crm_gateway.chain.fees import fee_fields
from crm_gateway.chain.keystore import Keystore
from crm_gateway.pipeline.nonces import NonceAllocator
from crm_gateway.store.models import (
    ChainTransaction,
    ChainTransactionStatus,
    Operation,
    OperationStatus,
)

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RequestsConnectionError,
    ConnectionError,
    TimeoutError,
    OSError,
)


class Sender:
    def __init__(
        self,
        *,
        contracts: Contracts,
        keystore: Keystore,
        session_factory: sessionmaker[Session],
        nonces: NonceAllocator,
        gas_limit_multiplier: float,
        batch_size: int = 50,
    ) -> None:
        self._contracts = contracts
        self._keystore = keystore
        self._sessions = session_factory
        self._nonces = nonces
        self._multiplier = gas_limit_multiplier
        self._batch_size = batch_size

    def run_once(self) -> int:
        """Submit up to one batch of pending rows; return how many rows were handled."""
        with self._sessions() as session:
            sequence = list(
                session.scalars(
                    select(Operation.seq)
                    .where(Operation.status == OperationStatus.PENDING)
                    .order_by(Operation.seq)
                    .limit(self._batch_size)
                )
            )
        handled = 0
        for seq in sequence:
            if not self._submit(seq):
                break  # the chain is unreachable: keep order, try again later
            handled += 1
        return handled

    def _submit(self, seq: int) -> bool:
        with self._sessions() as session:
            operation = session.get(Operation, seq)
            if operation is None or operation.status != OperationStatus.PENDING:
                return True
            account = self._keystore.get(operation.sender)
            if account is None:
                _fail(operation, "SignerUnavailable", {"sender": operation.sender})
                session.commit()
                return True
            w3 = self._contracts.chain.w3
            try:
                call = self._contracts[operation.contract].functions[operation.function](
                    *operation.args
                )
                estimate = call.estimate_gas({"from": account.address})
            except TRANSIENT_ERRORS as exc:
                log.warning("chain unreachable while simulating %s: %s", operation.id, exc)
                return False
            except Exception as exc:
                revert = self._contracts.artifacts.error_decoder.decode_exception(exc)
                if revert is None:
                    if isinstance(exc, Web3Exception | ValueError | TypeError):
                        _fail(operation, "InvalidCall", {"reason": str(exc)[:500]})
                        session.commit()
                        return True
                    raise
                _fail(operation, revert.name, revert.args)
                session.commit()
                return True

            tx = self._sign(session, operation, call, estimate, account)
            if tx is None:
                return False
            session.commit()
            broadcast(w3, session, tx)
            session.commit()
            return True

    def _sign(
        self, session: Session, operation: Operation, call: Any, estimate: int, account: Any
    ) -> ChainTransaction | None:
        w3 = self._contracts.chain.w3
        for _attempt in range(3):
            nonce = self._nonces.allocate(session, account.address)
            params = call.build_transaction(
                {
                    "from": account.address,
                    "nonce": nonce,
                    "gas": int(estimate * self._multiplier),
                    "chainId": self._contracts.chain.chain_id,
                    **fee_fields(w3),
                }
            )
            signed = account.sign_transaction(params)
            tx = ChainTransaction(
                sender=account.address,
                nonce=nonce,
                tx_hash="0x" + bytes(signed.hash).hex(),
                raw_tx=bytes(signed.raw_transaction),
                status=ChainTransactionStatus.SENT,
                gas_limit=int(params["gas"]),
                broadcast_count=0,
            )
            try:
                with session.begin_nested():
                    session.add(tx)
                    session.flush()
            except IntegrityError:
                # Another process took this nonce; start again from what is recorded.
                self._nonces.forget(account.address)
                continue
            operation.chain_tx_id = tx.id
            operation.status = OperationStatus.SUBMITTED
            operation.updated_at = datetime.now(UTC)
            return tx
        log.error("could not allocate a free nonce for %s", account.address)
        return None


def broadcast(w3: Any, session: Session, tx: ChainTransaction) -> bool:
    """Send a recorded transaction's signed bytes; a node that already has it is fine."""
    now = datetime.now(UTC)
    tx.last_sent_at = now
    if tx.first_sent_at is None:
        tx.first_sent_at = now
    tx.broadcast_count += 1
    try:
        w3.eth.send_raw_transaction(tx.raw_tx)
    except TRANSIENT_ERRORS as exc:
        log.warning("broadcast of %s failed, will retry: %s", tx.tx_hash, exc)
        return False
    except Exception as exc:
        # "already known", "nonce too low" and the like: the watcher decides from receipts.
        log.info("node did not take %s: %s", tx.tx_hash, exc)
        return False
    return True


def _fail(operation: Operation, name: str, args: dict[str, Any]) -> None:
    operation.status = OperationStatus.FAILED
    operation.error_name = name
    operation.error_args = args
    operation.updated_at = datetime.now(UTC)
