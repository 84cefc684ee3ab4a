"""Undo the off-chain part of a write whose chain operation failed for good.

A request writes its off-chain part (a sealed record, its blind indexes) in the same database
transaction as the outbox row of its chain write. When the chain refuses the write (the
simulation reverts, the receipt has status 0, a batch skips the item), the operation is settled
as failed and, in that same transaction, its off-chain part is taken back here, so the vault is
never ahead of the chain and the same request can be made again.

* `customers.register`: the record the request sealed (still version 1 with the commitment the
  operation carried; anything else means someone changed it since, and it is left alone) is
  deleted with its blind indexes, or, for a person this organisation had erased before, erased
  again (crypto-shredded, as it was).

Import batches (`customers.import`) are not undone: the importer sends a refused batch's sealed
rows again on its next run (see `services.importer`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from crm_gateway.store.models import (
    AccessAction,
    AccessLogEntry,
    BlindIndex,
    CustomerRecord,
    CustomerStatus,
    Operation,
)

log = logging.getLogger(__name__)


def compensate_failed(session: Session, operation: Operation) -> None:
    """Take back the off-chain part of `operation`, which was just settled as failed."""
    undo = _UNDO.get(operation.kind)
    if undo is not None:
        undo(session, operation)


def _undo_registration(session: Session, operation: Operation) -> None:
    customer_id, commitment = str(operation.args[0]).lower(), str(operation.args[1]).lower()
    record = session.scalars(
        select(CustomerRecord).where(CustomerRecord.customer_id == customer_id).with_for_update()
    ).one_or_none()
    if (
        record is None
        or record.status is not CustomerStatus.ACTIVE
        or record.version != 1
        or record.commitment.lower() != commitment
    ):
        return
    session.execute(delete(BlindIndex).where(BlindIndex.customer_id == customer_id))
    erased_before = session.scalar(
        select(AccessLogEntry.seq)
        .where(
            AccessLogEntry.customer_id == customer_id,
            AccessLogEntry.action == AccessAction.ERASE,
        )
        .limit(1)
    )
    if erased_before is None:
        session.delete(record)
    else:
        record.status = CustomerStatus.ERASED
        record.ciphertext = record.nonce = record.wrapped_key = record.kek_id = None
        record.erased_at = datetime.now(UTC)
    session.flush()
    log.info("registration %s failed; its sealed record was taken back", operation.id)


_UNDO: dict[str, Callable[[Session, Operation], None]] = {
    "customers.register": _undo_registration,
}
