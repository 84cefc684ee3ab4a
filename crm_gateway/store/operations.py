"""Queries on the operations outbox."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_gateway.store.models import Operation


def get_operation(session: Session, operation_id: str) -> Operation | None:
    """An operation by its public id (the primary key is the ordering `seq`)."""
    return session.scalars(select(Operation).where(Operation.id == operation_id)).one_or_none()
