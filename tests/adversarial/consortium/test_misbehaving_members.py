"""A second organisation's admin and auditors misbehave; organisation 1's customers and log hold.

Each attack of issue 11 that this suite covers is refused, with the contract's custom error or the
gateway's problem type named.
"""

from __future__ import annotations

import time

import pytest
from eth_account import Account
from eth_utils.crypto import keccak

from crm_gateway.cli.audit import verify_log
from crm_gateway.services.access import AccessService, Role
from crm_gateway.services.consent import LawfulBasis, purpose_id
from crm_gateway.services.errors import ConflictError
from crm_gateway.services.operations import OperationService
from tests.adversarial.consortium.conftest import Consortium
from tests.gateway.conftest import events, wait_until


def problem(response: object) -> str:
    body = response.json()  # type: ignore[attr-defined]
    return str(body["type"]).rsplit("/", 1)[-1]


def test_org2s_purpose_does_not_open_org1s_customers(consortium: Consortium) -> None:
    """Org 2's admin defines `org2.anything` (legitimate interest); org 1's AGENT reads a
    customer under it: refused (`purpose-not-shared`), as under `newsletter` without consent."""
    c = consortium
    _steward, steward = c.role_key("DATA_STEWARD")
    _agent, agent = c.role_key("AGENT")
    customer = c.customer(steward, "victim@example.com")
    c.define_purpose("newsletter", "consent")
    pid = purpose_id("org2.anything")
    notice = keccak(text="anything goes")
    basis = LawfulBasis.LEGITIMATE_INTEREST.ordinal
    c.send_as(c.org2_admin, c.fn("PurposeRegistry").definePurpose(pid, notice, basis))
    c.indexed_purpose("org2.anything")

    read = c.client.get(f"/v1/customers/{customer}?purpose=org2.anything", headers=agent)
    assert read.status_code == 403, read.text
    assert problem(read) == "purpose-not-shared"
    newsletter = c.client.get(f"/v1/customers/{customer}?purpose=newsletter", headers=agent)
    assert newsletter.status_code == 403
    assert problem(newsletter) == "consent-required"
    assert int(c.fn("ConsentLedger").mayProcess(customer, pid, 1).call()) == 3  # PurposeNotShared
    # Org 2's admin cannot share its purpose with org 1 in org 1's name, nor share org 1's.
    own = c.define_purpose("org1.support", "contract")
    refused = c.refusal(c.org2_admin.address, c.fn("PurposeRegistry").sharePurpose(own, 2))
    assert refused.name == "NotPurposeController"


def test_a_retired_purpose_reads_nothing(consortium: Consortium) -> None:
    c = consortium
    _steward, steward = c.role_key("DATA_STEWARD")
    customer = c.customer(steward, "retired@example.com")
    c.define_purpose("support", "contract")
    assert (
        c.client.get(f"/v1/customers/{customer}?purpose=support", headers=steward).status_code
        == 200
    )
    retired = c.client.post("/v1/purposes/support/retirement?wait=true", headers=c.admin1)
    assert retired.status_code == 200, retired.text
    wait_until(lambda: not c.runtime.read_model.purpose(purpose_id("support")).active)  # type: ignore[union-attr]
    read = c.client.get(f"/v1/customers/{customer}?purpose=support", headers=steward)
    assert read.status_code == 403, read.text
    assert problem(read) == "purpose-retired"


def test_a_revoked_key_does_not_come_back_through_org2(consortium: Consortium) -> None:
    """Org 1 revokes X's DATA_STEWARD; org 2's admin grants X a role: the contract refuses
    (`MembershipNotAccepted`: X never agreed). Even when X joins org 2 with its own signature
    and holds DATA_STEWARD there, X's old org-1 key is not in force at org 1's gateway (403
    `api-key-not-in-force`)."""
    c = consortium
    x, x_key = c.role_key("DATA_STEWARD")
    customer = c.customer(x_key, "kept@example.com")
    c.define_purpose("care", "contract")
    assert c.client.get(f"/v1/customers/{customer}?purpose=care", headers=x_key).status_code == 200
    revoked = c.client.post(
        "/v1/roles/revocations?wait=true",
        json={"role": "DATA_STEWARD", "account": x},
        headers=c.admin1,
    )
    assert revoked.status_code == 200, revoked.text
    wait_until(lambda: c.runtime.read_model.organization_of(x) is None)
    agent = Role.AGENT.role_id
    refused = c.refusal(c.org2_admin.address, c.fn("Consortium").grantRole(agent, x))
    assert (refused.name, refused.args) == ("MembershipNotAccepted", (x, c.org2))
    forged = c.fn("Consortium").grantRoleBySig(agent, x, 2**40, b"\x01" * 65)
    assert c.refusal(c.org2_admin.address, forged).name == "InvalidMembershipSignature"

    # X itself agrees to join org 2 (its key signs); org 2 grants it the very role its org-1
    # key names, so only "the account is in the key's organisation" stands in the way.
    steward = Role.DATA_STEWARD.role_id
    deadline = int(time.time()) + 600
    typed = AccessService(c.contracts).join_typed_data(x, c.org2, Role.DATA_STEWARD, deadline)
    signature = Account.sign_typed_data(c.runtime.keystore.unlock(x).key, full_message=typed)
    c.send_as(
        c.org2_admin,
        c.fn("Consortium").grantRoleBySig(steward, x, deadline, bytes(signature.signature)),
    )
    wait_until(lambda: c.runtime.read_model.organization_of(x) == c.org2)
    time.sleep(2.1)  # past the API key cache's lifetime (API_KEY_CACHE_SECONDS)
    read = c.client.get(f"/v1/customers/{customer}?purpose=care", headers=x_key)
    assert read.status_code == 403, read.text
    assert problem(read) == "api-key-not-in-force"


def test_a_pending_admin_cannot_be_pulled_away_to_block_a_proposal(
    consortium: Consortium,
) -> None:
    c = consortium
    pending = c.gateway_account()
    proposed = c.client.post(
        "/v1/orgs/proposals?wait=true",
        json={"kind": "add_organization", "name": "org-3", "admin": pending},
        headers=c.admin1,
    )
    assert proposed.status_code == 200, proposed.text
    proposal = int(events(proposed.json(), "ProposalCreated")[0]["proposalId"])
    refused = c.refusal(
        c.org2_admin.address, c.fn("Consortium").grantRole(Role.AGENT.role_id, pending)
    )
    assert refused.name == "MembershipNotAccepted"
    c.send_as(c.org2_admin, c.fn("Consortium").approve(proposal))
    executed = c.client.post(f"/v1/orgs/proposals/{proposal}/execution?wait=true", headers=c.admin1)
    assert executed.status_code == 200, executed.text
    assert events(executed.json(), "OrganizationAdded")[0]["admin"] == pending


def test_a_bogus_anchor_far_ahead_is_superseded_and_anchoring_goes_on(
    consortium: Consortium,
) -> None:
    """A misbehaving AUDITOR of org 1 anchors entries far ahead of the log. The gateway names
    the bogus batch instead of anchoring; org 1's ORG_ADMIN supersedes it; anchoring goes on and
    `audit verify` finds the log intact."""
    c = consortium
    _steward, steward = c.role_key("DATA_STEWARD")
    c.customer(steward, "logged@example.com")  # a few access-log entries
    honest, _ = c.role_key("AUDITOR")
    rogue = Account.create()
    c.fund(rogue.address)
    deadline = int(time.time()) + 600
    typed = AccessService(c.contracts).join_typed_data(rogue.address, 1, Role.AUDITOR, deadline)
    signature = Account.sign_typed_data(rogue.key, full_message=typed).signature.to_0x_hex()
    granted = c.client.post(
        "/v1/roles/grants?wait=true",
        json={
            "role": "AUDITOR",
            "account": rogue.address,
            "deadline": deadline,
            "signature": signature,
        },
        headers=c.admin1,
    )
    assert granted.status_code == 200, granted.text
    anchor = c.fn("AuditAnchor")
    c.send_as(rogue, anchor.anchor(b"\x11" * 32, 1, 10**9, 10**9))
    bogus = int(anchor.lastBatchOf(1).call())

    anchorer = c.runtime.anchorer
    with pytest.raises(ConflictError) as conflict:
        anchorer.anchor(honest)
    assert conflict.value.extensions["batch_id"] == bogus
    # Neither the rogue auditor nor org 2's admin can undo it; org 1's admin can.
    assert c.refusal(rogue.address, anchor.supersedeBatch(bogus)).name == (
        "AccessControlUnauthorizedAccount"
    )
    assert c.refusal(c.org2_admin.address, anchor.supersedeBatch(bogus)).name == (
        "NotBatchOrganization"
    )
    deployer = str(c.contracts.record.deployer)
    write = anchorer.supersede(deployer, bogus)
    operations = OperationService(c.runtime.session_factory, c.runtime.pipeline)
    view, _ = operations.submit(write, api_key_id=None, idempotency_key=None, payload=write.args)
    wait_until(lambda: operations.get_internal(view.id).settled)
    assert operations.get_internal(view.id).status == "confirmed"
    assert int(anchor.lastAnchoredSeq(1).call()) == 0

    batches = anchorer.anchor(honest)
    assert batches, "the honest auditor anchors again"
    ids = {b.operation_id for b in batches}

    def anchored() -> bool:
        anchorer.refresh()
        mine = [b for b in anchorer.batches() if b.operation_id in ids]
        return all(b.status == "anchored" for b in mine)

    wait_until(anchored)
    assert int(anchor.lastAnchoredSeq(1).call()) == batches[-1].last_seq
    assert verify_log(c.runtime) == 0  # `crm-chaincode audit verify`: intact
