"""Record a chain write in the same database transaction as the request's off-chain write."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crm_gateway.store.models import Operation, OperationStatus


class IdempotencyConflict(Exception):
    """An idempotency key was reused with a different request."""

    def __init__(self, key: str, operation_id: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used for a different request")
        self.key = key
        self.operation_id = operation_id


@dataclass(frozen=True)
class ChainWrite:
    """One contract call to be made: what, on which contract, signed by whom."""

    kind: str
    contract: str
    function: str
    args: list[Any]
    sender: str


def request_fingerprint(payload: Any) -> str:
    """A stable hash of a request body, so a reused key with another body is noticed."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def enqueue(
    session: Session,
    write: ChainWrite,
    *,
    api_key_id: str | None,
    idempotency_key: str | None,
    request_hash: str,
) -> tuple[Operation, bool]:
    """Add an outbox row (not committed); return it and whether it is new.

    With an idempotency key already seen for this API key, the earlier operation is returned
    instead, so a client that retries after a timeout never causes a second chain write.
    """
    if idempotency_key is not None:
        existing = _find(session, api_key_id, idempotency_key)
        if existing is not None:
            return _replay(existing, idempotency_key, request_hash), False
    operation = Operation(
        api_key_id=api_key_id,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        kind=write.kind,
        contract=write.contract,
        function=write.function,
        args=write.args,
        sender=write.sender,
        status=OperationStatus.PENDING,
    )
    if idempotency_key is None:
        session.add(operation)
        session.flush()
        return operation, True
    try:
        with session.begin_nested():
            session.add(operation)
            session.flush()
    except IntegrityError:
        # A concurrent request with the same key won the race; answer with its operation.
        existing = _find(session, api_key_id, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, idempotency_key, request_hash), False
    return operation, True


def _find(session: Session, api_key_id: str | None, key: str) -> Operation | None:
    return session.scalars(
        select(Operation).where(
            Operation.api_key_id == api_key_id, Operation.idempotency_key == key
        )
    ).first()


def _replay(existing: Operation, key: str, request_hash: str) -> Operation:
    if existing.request_hash != request_hash:
        raise IdempotencyConflict(key, existing.id)
    return existing
