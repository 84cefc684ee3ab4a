"""The processing rule's refusals, as the gateway answers a read it does not allow.

`ConsentLedger.mayProcess` is the rule; `ReadModel.may_process` answers it from the read model,
and `require_processing` turns a refusal into the problem a client sees: 403 `unknown-purpose`,
`purpose-retired`, `purpose-not-shared` (the purpose is another organisation's and not shared
with the reader), or `consent-required` (basis consent, no live consent).
"""

from __future__ import annotations

from crm_gateway.indexer.read_model import ProcessingDecision
from crm_gateway.services.errors import DomainError


class ConsentRequiredError(DomainError):
    """The purpose needs the customer's consent, and there is no live one."""

    status, slug, title = 403, "consent-required", "Consent required"


class PurposeNotUsableError(DomainError):
    """The reading organisation may not use this purpose (subclasses say why)."""

    status, slug, title = 403, "purpose-not-usable", "Purpose not usable"


class UnknownPurposeError(PurposeNotUsableError):
    slug, title = "unknown-purpose", "Unknown purpose"


class PurposeRetiredError(PurposeNotUsableError):
    slug, title = "purpose-retired", "Purpose retired"


class PurposeNotSharedError(PurposeNotUsableError):
    """Neither controlled by the reading organisation nor shared with it by its controller."""

    slug, title = "purpose-not-shared", "Purpose not shared"


_PROCESSING_REFUSALS: dict[str, tuple[type[PurposeNotUsableError], str]] = {
    "unknown_purpose": (UnknownPurposeError, "purpose {} is not registered"),
    "purpose_retired": (PurposeRetiredError, "purpose {} is retired"),
    "purpose_not_shared": (
        PurposeNotSharedError,
        "purpose {} is neither controlled by organisation {} nor shared with it",
    ),
}


def require_processing(decision: ProcessingDecision, purpose: str) -> None:
    """Raise the refusal of `decision` (about `purpose`, as the client named it), if any."""
    if decision.allowed:
        return
    refusal = _PROCESSING_REFUSALS.get(decision.answer)
    if refusal is not None:
        error, detail = refusal
        raise error(
            detail.format(purpose, decision.org_id),
            reason=decision.answer,
            as_of_block=decision.as_of_block,
        )
    raise _consent_refusal(decision)


def _consent_refusal(decision: ProcessingDecision) -> ConsentRequiredError:
    consent = decision.consent
    reason = consent.reason if consent is not None else None
    reasons = {
        "no_consent": "the customer has not consented to this purpose",
        "revoked": f"the customer revoked consent at block {consent and consent.block_number}",
        "expired": f"the consent expired at {consent and consent.expires_at}",
        "notice_changed": (
            f"consent was given to notice version {consent and consent.purpose_version}; "
            f"the purpose is at version {consent and consent.current_purpose_version}"
        ),
    }
    return ConsentRequiredError(
        reasons.get(reason or "", "no live consent"),
        reason=reason,
        as_of_block=decision.as_of_block,
    )
