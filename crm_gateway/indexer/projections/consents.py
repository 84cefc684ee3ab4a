"""Purposes of the PurposeRegistry and consents of the ConsentLedger (issue 4's hot reads)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.orm import Session

from crm_gateway.indexer.events import IndexedEvent
from crm_gateway.indexer.projections.base import (
    PartitionedProjection,
    Projection,
    execute,
    handles,
    table,
)
from crm_gateway.store.models import RmConsent, RmConsentChange, RmPurpose, RmPurposeShare

PURPOSE_REGISTRY = "PurposeRegistry"
CONSENT_LEDGER = "ConsentLedger"

# `PurposeRegistry.LawfulBasis` and `ConsentLedger.Method`, by ordinal (append-only in the ABI).
LAWFUL_BASES: tuple[str, ...] = ("consent", "contract", "legal_obligation", "legitimate_interest")
CONSENT_METHODS: tuple[str, ...] = ("wallet_transaction", "signature")

_purposes = table(RmPurpose)
_shares = table(RmPurposeShare)
_INSERT_SHARE = insert(_shares)
_DELETE_SHARE = delete(_shares).where(
    _shares.c.purpose_id == bindparam("purpose"), _shares.c.org_id == bindparam("org")
)
_consents = table(RmConsent)
_changes = table(RmConsentChange)

_INSERT_PURPOSE = insert(_purposes)
_UPDATE_PURPOSE = update(_purposes).where(_purposes.c.purpose_id == bindparam("purpose"))
_INSERT_CHANGE = insert(_changes)
_INSERT_CONSENT = insert(_consents)
_UPDATE_CONSENT = update(_consents).where(
    _consents.c.customer_id == bindparam("customer"),
    _consents.c.purpose_id == bindparam("purpose"),
    _consents.c.org_id == bindparam("org"),
)


def _name(names: tuple[str, ...], ordinal: int) -> str:
    return names[ordinal] if 0 <= ordinal < len(names) else f"unknown_{ordinal}"


def expiry(seconds: int) -> datetime | None:
    """A contract expiry (block timestamp seconds, 0 = none) as a UTC datetime or None."""
    return None if seconds == 0 else datetime.fromtimestamp(seconds, UTC)


class PurposesProjection(Projection):
    """`rm_purposes`: every purpose with its controller, current notice version and hash, lawful
    basis and state, as `PurposeRegistry.purpose` answers; `rm_purpose_shares`: the
    organisations each controller shares its purpose with (`isSharedWith`). Small: rebuilt in
    full."""

    name = "purposes"
    tables = (RmPurpose, RmPurposeShare)

    @handles(PURPOSE_REGISTRY, "PurposeShared")
    def shared(self, session: Session, event: IndexedEvent) -> None:
        execute(
            session,
            _INSERT_SHARE,
            {
                "purpose_id": event.args["purposeId"],
                "org_id": int(event.args["orgId"]),
                "shared_block": event.block_number,
            },
        )

    @handles(PURPOSE_REGISTRY, "PurposeUnshared")
    def unshared(self, session: Session, event: IndexedEvent) -> None:
        execute(
            session,
            _DELETE_SHARE,
            {"purpose": event.args["purposeId"], "org": int(event.args["orgId"])},
        )

    @handles(PURPOSE_REGISTRY, "PurposeDefined")
    def defined(self, session: Session, event: IndexedEvent) -> None:
        execute(
            session,
            _INSERT_PURPOSE,
            {
                "purpose_id": event.args["purposeId"],
                "controller_org": int(event.args["controllerOrg"]),
                "version": int(event.args["version"]),
                "notice_hash": event.args["noticeHash"],
                "basis": _name(LAWFUL_BASES, int(event.args["basis"])),
                "active": True,
                "updated_block": event.block_number,
                "updated_at": event.block_timestamp,
            },
        )

    @handles(PURPOSE_REGISTRY, "PurposeNoticeUpdated")
    def notice_updated(self, session: Session, event: IndexedEvent) -> None:
        execute(
            session,
            _UPDATE_PURPOSE,
            {
                "purpose": event.args["purposeId"],
                "version": int(event.args["version"]),
                "notice_hash": event.args["noticeHash"],
                "updated_block": event.block_number,
                "updated_at": event.block_timestamp,
            },
        )

    @handles(PURPOSE_REGISTRY, "PurposeRetired")
    def retired(self, session: Session, event: IndexedEvent) -> None:
        execute(
            session,
            _UPDATE_PURPOSE,
            {
                "purpose": event.args["purposeId"],
                "active": False,
                "updated_block": event.block_number,
                "updated_at": event.block_timestamp,
            },
        )


class ConsentsProjection(PartitionedProjection):
    """`rm_consents` (the last change of each customer, purpose and processor organisation, as
    `ConsentLedger.consent` answers, plus the block and transaction of that change) and
    `rm_consent_changes` (every change: the history and receipts). Keyed by customer id, so a
    rebuild after a reorg recomputes only the customers whose changes were removed.
    ConsentChangeRejected changes nothing."""

    name = "consents"
    tables = (RmConsentChange, RmConsent)
    partition_argument = "customerId"
    partition_column = "customer_id"

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
            "changed_at": event.block_timestamp,
            "block_number": event.block_number,
        }
        execute(
            session,
            _INSERT_CHANGE,
            {
                **key,
                **state,
                "tx_hash": event.tx_hash,
                "log_index": event.log_index,
                "nonce": int(args["nonce"]),
                "method": _name(CONSENT_METHODS, int(args["method"])),
                "submitter": args["submitter"],
            },
        )
        where = {"customer": key["customer_id"], "purpose": key["purpose_id"], "org": key["org_id"]}
        source = {"tx_hash": event.tx_hash, "log_index": event.log_index}
        updated = execute(session, _UPDATE_CONSENT, {**where, **state, **source})
        if updated.rowcount == 0:
            execute(session, _INSERT_CONSENT, {**key, **state, **source})


__all__ = [
    "CONSENT_LEDGER",
    "CONSENT_METHODS",
    "LAWFUL_BASES",
    "PURPOSE_REGISTRY",
    "ConsentsProjection",
    "PurposesProjection",
    "expiry",
]
