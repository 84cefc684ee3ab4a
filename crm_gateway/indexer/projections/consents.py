"""Purposes of the PurposeRegistry and consents of the ConsentLedger (issue 4's hot reads)."""

from __future__ import annotations

from collections.abc import Hashable
from datetime import UTC, datetime

from sqlalchemy import delete, insert, update
from sqlalchemy.orm import Session

from crm_gateway.indexer.events import IndexedEvent
from crm_gateway.indexer.projections.base import Projection, handles
from crm_gateway.store.models import RmConsent, RmConsentChange, RmPurpose

PURPOSE_REGISTRY = "PurposeRegistry"
CONSENT_LEDGER = "ConsentLedger"

# `PurposeRegistry.LawfulBasis` and `ConsentLedger.Method`, by ordinal (append-only in the ABI).
LAWFUL_BASES: tuple[str, ...] = ("consent", "contract", "legal_obligation", "legitimate_interest")
CONSENT_METHODS: tuple[str, ...] = ("wallet_transaction", "signature")


def _name(names: tuple[str, ...], ordinal: int) -> str:
    return names[ordinal] if 0 <= ordinal < len(names) else f"unknown_{ordinal}"


def expiry(seconds: int) -> datetime | None:
    """A contract expiry (block timestamp seconds, 0 = none) as a UTC datetime or None."""
    return None if seconds == 0 else datetime.fromtimestamp(seconds, UTC)


class PurposesProjection(Projection):
    """`rm_purposes`: every purpose with its controller, current notice version and hash, lawful
    basis and state, as `PurposeRegistry.purpose` answers. Small: rebuilt in full."""

    name = "purposes"
    tables = (RmPurpose,)

    @handles(PURPOSE_REGISTRY, "PurposeDefined")
    def defined(self, session: Session, event: IndexedEvent) -> None:
        session.execute(
            insert(RmPurpose).values(
                purpose_id=event.args["purposeId"],
                controller_org=int(event.args["controllerOrg"]),
                version=int(event.args["version"]),
                notice_hash=event.args["noticeHash"],
                basis=_name(LAWFUL_BASES, int(event.args["basis"])),
                active=True,
                updated_block=event.block_number,
                updated_at=event.block_timestamp,
            )
        )

    @handles(PURPOSE_REGISTRY, "PurposeNoticeUpdated")
    def notice_updated(self, session: Session, event: IndexedEvent) -> None:
        session.execute(
            update(RmPurpose)
            .where(RmPurpose.purpose_id == event.args["purposeId"])
            .values(
                version=int(event.args["version"]),
                notice_hash=event.args["noticeHash"],
                updated_block=event.block_number,
                updated_at=event.block_timestamp,
            )
        )

    @handles(PURPOSE_REGISTRY, "PurposeRetired")
    def retired(self, session: Session, event: IndexedEvent) -> None:
        session.execute(
            update(RmPurpose)
            .where(RmPurpose.purpose_id == event.args["purposeId"])
            .values(
                active=False, updated_block=event.block_number, updated_at=event.block_timestamp
            )
        )


class ConsentsProjection(Projection):
    """`rm_consents` (the last change of each customer, purpose and processor organisation, as
    `ConsentLedger.consent` answers, plus the block and transaction of that change) and
    `rm_consent_changes` (every change: the history and receipts). Keyed by customer id, so a
    rebuild after a reorg recomputes only the customers whose changes were removed.
    ConsentChangeRejected changes nothing."""

    name = "consents"
    tables = (RmConsentChange, RmConsent)

    def key_of(self, event: IndexedEvent) -> Hashable | None:
        return str(event.args["customerId"])

    def forget(self, session: Session, keys: set[Hashable]) -> None:
        ids = sorted(str(k) for k in keys)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            session.execute(delete(RmConsentChange).where(RmConsentChange.customer_id.in_(chunk)))
            session.execute(delete(RmConsent).where(RmConsent.customer_id.in_(chunk)))

    @handles(CONSENT_LEDGER, "ConsentChanged")
    def changed(self, session: Session, event: IndexedEvent) -> None:
        args = event.args
        key = {
            "customer_id": args["customerId"],
            "purpose_id": args["purposeId"],
            "org_id": int(args["orgId"]),
        }
        state = {
            "granted": bool(args["granted"]),
            "purpose_version": int(args["purposeVersion"]),
            "expires_at": expiry(int(args["expiresAt"])),
            "receipt_hash": args["receiptHash"],
        }
        session.execute(
            insert(RmConsentChange).values(
                tx_hash=event.tx_hash,
                log_index=event.log_index,
                nonce=int(args["nonce"]),
                method=_name(CONSENT_METHODS, int(args["method"])),
                submitter=args["submitter"],
                block_number=event.block_number,
                changed_at=event.block_timestamp,
                **key,
                **state,
            )
        )
        where = {
            "changed_at": event.block_timestamp,
            "block_number": event.block_number,
            "tx_hash": event.tx_hash,
            "log_index": event.log_index,
        }
        updated = session.execute(
            update(RmConsent)
            .where(
                RmConsent.customer_id == key["customer_id"],
                RmConsent.purpose_id == key["purpose_id"],
                RmConsent.org_id == key["org_id"],
            )
            .values(**state, **where)
        )
        if getattr(updated, "rowcount", 0) == 0:
            session.execute(insert(RmConsent).values(**key, **state, **where))


__all__ = [
    "CONSENT_LEDGER",
    "CONSENT_METHODS",
    "LAWFUL_BASES",
    "PURPOSE_REGISTRY",
    "ConsentsProjection",
    "PurposesProjection",
    "expiry",
]
