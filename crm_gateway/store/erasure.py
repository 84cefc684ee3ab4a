"""Erasure requests (GDPR Art. 17) that customers sign in the portal, and what became of them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Index, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from crm_gateway.store.models import (
    ADDRESS_LENGTH,
    BYTES32_HEX_LENGTH,
    Base,
    StrEnumType,
    UTCDateTime,
    _in,
    new_uuid,
    utcnow,
)


class ErasureStatus(StrEnum):
    REQUESTED = "requested"  # signed by the customer's wallet, waiting for the organisation
    IN_PROGRESS = "in_progress"  # the organisation queued the erasure (operation_id)
    DONE = "done"  # the record is shredded and the erasure is on-chain
    REFUSED = "refused"  # the organisation refused, with a reason the customer sees


class ErasureRequest(Base):
    __tablename__ = "erasure_requests"
    __table_args__ = (
        CheckConstraint(_in("status", ErasureStatus), name="status"),
        Index("ix_erasure_requests_customer_id", "customer_id"),
        Index("ix_erasure_requests_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    customer_id: Mapped[str] = mapped_column(String(BYTES32_HEX_LENGTH))
    org_id: Mapped[int]
    wallet: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    # The EIP-712 signature of the customer's wallet over the request (evidence of who asked).
    signature: Mapped[str] = mapped_column(String(132))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[ErasureStatus] = mapped_column(
        StrEnumType(ErasureStatus), default=ErasureStatus.REQUESTED
    )
    reason: Mapped[str | None] = mapped_column(Text)
    operation_id: Mapped[str | None] = mapped_column(String(36))
    decided_by: Mapped[str | None] = mapped_column(String(ADDRESS_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


def of_customer(session: Session, customer_id: str) -> Sequence[ErasureRequest]:
    return session.scalars(
        select(ErasureRequest)
        .where(ErasureRequest.customer_id == customer_id)
        .order_by(ErasureRequest.created_at)
    ).all()


def of_org(
    session: Session, org_id: int, status: ErasureStatus | None = None
) -> Sequence[ErasureRequest]:
    query = select(ErasureRequest).where(ErasureRequest.org_id == org_id)
    if status is not None:
        query = query.where(ErasureRequest.status == status)
    return session.scalars(query.order_by(ErasureRequest.created_at)).all()
