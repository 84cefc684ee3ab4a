"""Queue chain writes and report where they stand."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.pipeline.outbox import (
    ChainWrite,
    IdempotencyConflict,
    enqueue,
    request_fingerprint,
)
from crm_gateway.pipeline.worker import PipelineWorker
from crm_gateway.services.errors import ConflictError, NotFoundError, SignerUnavailableError
from crm_gateway.store.models import ApiKey, ChainTransaction, Operation, OperationStatus
from crm_gateway.store.operations import get_operation

_SETTLED = {OperationStatus.CONFIRMED, OperationStatus.FAILED}


@dataclass(frozen=True)
class OperationView:
    id: str
    kind: str
    status: str
    args: list[Any]
    created_at: datetime
    updated_at: datetime
    tx_hash: str | None
    nonce: int | None
    block_number: int | None
    block_hash: str | None
    gas_used: int | None
    error: dict[str, Any] | None
    result: dict[str, Any] | None

    @property
    def settled(self) -> bool:
        return self.status in _SETTLED


class OperationService:
    def __init__(self, sessions: sessionmaker[Session], worker: PipelineWorker) -> None:
        self._sessions = sessions
        self._worker = worker

    def submit(
        self,
        write: ChainWrite,
        *,
        api_key_id: str | None,
        idempotency_key: str | None,
        payload: Any,
        off_chain: Callable[[Session], None] | None = None,
    ) -> tuple[OperationView, bool]:
        """Commit an outbox row for `write`; return its view and whether it is new.

        `off_chain` writes the request's off-chain part in the same database transaction, so
        either both are committed or neither is. A replayed idempotency key runs it not again.
        A write whose signer has no key here is refused (`SignerUnavailableError`) before
        anything is written.
        """
        if not self._worker.sender.can_sign(write.sender):
            raise SignerUnavailableError(
                f"this gateway holds no key for {write.sender}, the account that signs "
                f"{write.kind}; add it to the keystore (nothing was queued)",
                account=write.sender,
            )
        fingerprint = request_fingerprint({"kind": write.kind, "payload": payload})
        with self._sessions() as session:
            try:
                operation, created = enqueue(
                    session,
                    write,
                    api_key_id=api_key_id,
                    idempotency_key=idempotency_key,
                    request_hash=fingerprint,
                )
            except IdempotencyConflict as exc:
                raise ConflictError(str(exc), operation_id=exc.operation_id) from exc
            if created and off_chain is not None:
                off_chain(session)
            session.commit()
            view = _view(session, operation)
        if created:
            self._worker.wake()
        return view, created

    def get(self, operation_id: str, org_id: int) -> OperationView:
        """An operation, visible only to API keys of the organisation that requested it."""
        with self._sessions() as session:
            operation = get_operation(session, operation_id)
            key = (
                session.get(ApiKey, operation.api_key_id)
                if operation and operation.api_key_id
                else None
            )
            if operation is None or key is None or key.org_id != org_id:
                raise NotFoundError(f"operation {operation_id} does not exist")
            return _view(session, operation)

    def get_internal(self, operation_id: str) -> OperationView:
        """An operation regardless of who requested it (for admin commands)."""
        with self._sessions() as session:
            operation = get_operation(session, operation_id)
            if operation is None:
                raise NotFoundError(f"operation {operation_id} does not exist")
            return _view(session, operation)

    def wait(self, operation_id: str, org_id: int, timeout: float) -> OperationView:
        """Poll until the operation is confirmed or failed, or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            view = self.get(operation_id, org_id)
            if view.settled or time.monotonic() >= deadline:
                return view
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _view(session: Session, operation: Operation) -> OperationView:
    tx = session.get(ChainTransaction, operation.chain_tx_id) if operation.chain_tx_id else None
    error = None
    if operation.error_name is not None:
        error = {"name": operation.error_name, "args": operation.error_args or {}}
    return OperationView(
        id=operation.id,
        kind=operation.kind,
        args=list(operation.args),
        status=str(
            operation.status.value if hasattr(operation.status, "value") else operation.status
        ),
        created_at=operation.created_at,
        updated_at=operation.updated_at,
        tx_hash=tx.tx_hash if tx else None,
        nonce=tx.nonce if tx else None,
        block_number=tx.block_number if tx else None,
        block_hash=tx.block_hash if tx else None,
        gas_used=tx.gas_used if tx else None,
        error=error,
        result=operation.result,
    )
