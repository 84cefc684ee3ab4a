"""Signed consents a relayer cannot misuse, and a withdrawal that always goes through.

Issue 11, items 4 and 6: a relayer held a grant back and applied it to a newer notice, or kept
a signature with a deadline up to 2^256; the gateway refused a revocation on a retired purpose
that the contract accepts. Each attack is tried through the gateway (the problem names the
contract's custom error) and, where a misbehaving relayer would bypass the gateway, straight on
the chain with its own RELAYER key (the custom error the contract reverts with).
"""

from __future__ import annotations

from eth_utils.crypto import keccak

from tests.adversarial.customers.conftest import (
    MARKETING,
    Consortium,
    change_body,
    change_tuple,
    sign,
)

CHAIN_REFUSED = "https://crm-chaincode.dev/problems/chain-refused"


def _relay(world: Consortium, body: dict[str, object], wait: str = "true") -> tuple[int, str]:
    response = world.post(f"/v1/consents?wait={wait}", body, world.relayer)
    problem = response.json()
    if response.status_code == 422:
        assert problem["type"] == CHAIN_REFUSED
        return 422, problem["error"]["name"]
    return response.status_code, ""


def _on_chain(world: Consortium, typed: dict[str, object], signature: str) -> str:
    """What the contract answers the relayer that bypasses the gateway."""
    ledger = world.contract("ConsentLedger").functions
    call = ledger.setConsentBySig(change_tuple(typed), bytes.fromhex(signature[2:]))
    return world.refusal(world.relayer_account, call).name


def _new_notice(world: Consortium, text: str) -> None:
    response = world.post(
        f"/v1/purposes/{MARKETING}/notice?wait=true", {"notice_text": text}, world.admin
    )
    assert response.status_code == 200, response.text


def test_a_relayer_cannot_apply_a_grant_to_a_newer_notice(consortium: Consortium):
    world = consortium
    typed = world.consent_typed(granted=True)  # Alice is shown notice version 1
    assert typed["message"]["purposeVersion"] == 1
    signature = sign(world.alice_wallet, typed)
    _new_notice(world, "Version 2: we now also share your e-mail with partners.")
    for wait in ("true", "false"):  # refused up front: the version can only move on
        assert _relay(world, change_body(typed, signature), wait) == (422, "NoticeVersionMismatch")
    assert _on_chain(world, typed, signature) == "NoticeVersionMismatch"
    assert world.check()["granted"] is False
    # Shown version 2, she grants it.
    fresh = world.consent_typed(granted=True)
    assert fresh["message"]["purposeVersion"] == 2
    assert _relay(world, change_body(fresh, sign(world.alice_wallet, fresh))) == (200, "")
    assert world.check()["granted"] is True


def test_a_deadline_further_ahead_than_the_signature_lifetime_is_refused(consortium: Consortium):
    world = consortium
    ttl = world.runtime.settings.signature_ttl_seconds
    ledger = world.contract("ConsentLedger").functions
    assert ledger.maxSignatureLifetime().call() == ttl  # set by the migration from the setting
    typed = world.consent_typed(granted=True)
    assert typed["message"]["deadline"] <= world.chain_time() + ttl
    typed["message"]["deadline"] = world.chain_time() + 10 * ttl  # signed for far too long
    signature = sign(world.alice_wallet, typed)
    assert _relay(world, change_body(typed, signature)) == (422, "DeadlineTooFar")
    assert _on_chain(world, typed, signature) == "DeadlineTooFar"
    typed["message"]["deadline"] = 2**256 - 1
    signature = sign(world.alice_wallet, typed)
    assert _relay(world, change_body(typed, signature)) == (422, "DeadlineTooFar")
    assert world.check()["granted"] is False


def test_a_signature_held_back_past_its_deadline_is_refused(consortium: Consortium):
    world = consortium
    typed = world.consent_typed(granted=True)
    signature = sign(world.alice_wallet, typed)
    world.advance_time(world.runtime.settings.signature_ttl_seconds + 60)
    for wait in ("true", "false"):  # refused up front: the chain's clock only moves on
        assert _relay(world, change_body(typed, signature), wait) == (422, "DeadlineExpired")
    assert _on_chain(world, typed, signature) == "DeadlineExpired"
    assert world.check()["granted"] is False


def test_a_revocation_on_a_retired_purpose_goes_through_and_is_enforced(consortium: Consortium):
    world = consortium
    granted = world.consent_typed(granted=True)
    assert _relay(world, change_body(granted, sign(world.alice_wallet, granted))) == (200, "")
    revocation = world.consent_typed(granted=False)  # prepared while the purpose is active
    _new_notice(world, "Version 2.")  # and the notice moved on meanwhile
    purposes = world.contract("PurposeRegistry").functions
    world.transact(world.founder, purposes.retirePurpose(keccak(text=MARKETING)))
    assert purposes.purposeStatus(keccak(text=MARKETING)).call()[1] is False

    # A grant on the retired purpose is refused; the revocation is not (GDPR Art. 7(3)).
    grant = world.consent_typed(granted=True)
    assert _relay(world, change_body(grant, sign(world.alice_wallet, grant))) == (
        422,
        "PurposeIsRetired",
    )
    body = change_body(revocation, sign(world.alice_wallet, revocation))
    assert _relay(world, body) == (200, "")
    ledger = world.contract("ConsentLedger").functions
    stored = ledger.consent(bytes.fromhex(world.alice[2:]), keccak(text=MARKETING), 1).call()
    assert stored[0] is False  # withdrawn on-chain
    assert world.check()["granted"] is False
    read = world.client.get(
        f"/v1/customers/{world.alice}?purpose={MARKETING}", headers=world.steward
    )
    assert read.status_code == 403
