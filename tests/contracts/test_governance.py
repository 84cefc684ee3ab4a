"""ConsortiumApprovals: proposals, approvals by organisation, threshold, expiry, execution."""

from __future__ import annotations

from eth_abi import encode

ZERO = "0x0000000000000000000000000000000000000000"

ADD_ORGANIZATION, SUSPEND_ORGANIZATION, REACTIVATE_ORGANIZATION, CHANGE_THRESHOLD = range(4)


def propose(chain, consortium, call, sender) -> int:
    receipt = chain.transact(call, sender)
    return int(chain.events(consortium, "ProposalCreated", receipt)[0]["proposalId"])


def test_add_organization_proposal_lifecycle(chain, consortium, accounts):
    fns = consortium.functions
    founder, new_admin = accounts[1], accounts[2]

    receipt = chain.transact(fns.proposeAddOrganization("merchant-co", new_admin), founder)
    created_at = chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    data = encode(["string", "address"], ["merchant-co", new_admin])

    assert chain.event_names(consortium, receipt) == ["ProposalCreated", "ProposalApproved"]
    assert chain.events(consortium, "ProposalCreated", receipt) == [
        {
            "proposalId": 1,
            "kind": ADD_ORGANIZATION,
            "proposerOrg": 1,
            "proposer": founder,
            "data": data,
            "expiresAt": created_at + 3600,
        }
    ]
    assert chain.events(consortium, "ProposalApproved", receipt) == [
        {"proposalId": 1, "orgId": 1, "approver": founder, "approvals": 1}
    ]
    assert fns.proposal(1).call() == (
        ADD_ORGANIZATION,
        1,
        created_at,
        created_at + 3600,
        False,
        founder,
        data,
    )
    assert fns.proposalCount().call() == 1
    assert fns.hasApproved(1, 1).call()
    assert not fns.hasApproved(1, 2).call()
    assert fns.approvalCount(1).call() == 1
    assert fns.requiredApprovals().call() == 1

    receipt = chain.transact(fns.execute(1), founder)
    assert chain.event_names(consortium, receipt) == [
        "OrganizationAdded",
        "MemberAdded",
        "RoleGranted",
        "ProposalExecuted",
    ]
    assert chain.events(consortium, "OrganizationAdded", receipt) == [
        {"orgId": 2, "name": "merchant-co", "admin": new_admin}
    ]
    assert chain.events(consortium, "MemberAdded", receipt) == [{"orgId": 2, "account": new_admin}]
    assert chain.events(consortium, "ProposalExecuted", receipt) == [{"proposalId": 1}]
    assert fns.proposal(1).call()[4] is True
    assert fns.organization(2).call() == (2, "merchant-co", new_admin, True)
    assert fns.organizationIdByName("merchant-co").call() == 2
    assert fns.activeOrganizationCount().call() == 2
    assert fns.requiredApprovals().call() == 2


def test_below_threshold_then_approved_by_second_org(chain, consortium, accounts, add_org):
    fns = consortium.functions
    add_org("org-2", accounts[2])
    add_org("org-3", accounts[3])
    assert fns.requiredApprovals().call() == 2

    proposal_id = propose(chain, consortium, fns.proposeThresholdChange(7_500), accounts[1])
    with chain.reverts("BelowThreshold", proposal_id, 1, 2):
        fns.execute(proposal_id).transact({"from": accounts[1]})

    receipt = chain.transact(fns.approve(proposal_id), accounts[2])
    assert chain.events(consortium, "ProposalApproved", receipt) == [
        {"proposalId": proposal_id, "orgId": 2, "approver": accounts[2], "approvals": 2}
    ]
    assert fns.hasApproved(proposal_id, 2).call()

    # Any active org admin may execute, even one whose org did not approve.
    receipt = chain.transact(fns.execute(proposal_id), accounts[3])
    assert chain.event_names(consortium, receipt) == ["ThresholdChanged", "ProposalExecuted"]
    assert chain.events(consortium, "ThresholdChanged", receipt) == [
        {"oldBps": 5001, "newBps": 7500}
    ]
    assert fns.thresholdBps().call() == 7500
    assert fns.requiredApprovals().call() == 3  # ceil(3 * 0.75) = 3


def test_replayed_approval_is_refused(chain, consortium, accounts, roles, add_org):
    fns = consortium.functions
    add_org("org-2", accounts[2])
    add_org("org-3", accounts[3])
    chain.grant(fns, roles["ORG_ADMIN"], accounts[5], accounts[1])
    proposal_id = propose(chain, consortium, fns.proposeThresholdChange(10_000), accounts[1])

    with chain.reverts("AlreadyApproved", proposal_id, 1):
        fns.approve(proposal_id).transact({"from": accounts[1]})
    # Another admin of the same organisation cannot approve a second time for it either.
    with chain.reverts("AlreadyApproved", proposal_id, 1):
        fns.approve(proposal_id).transact({"from": accounts[5]})
    chain.transact(fns.approve(proposal_id), accounts[2])
    with chain.reverts("AlreadyApproved", proposal_id, 2):
        fns.approve(proposal_id).transact({"from": accounts[2]})
    assert fns.approvalCount(proposal_id).call() == 2


def test_expired_proposal_cannot_be_approved_or_executed(chain, consortium, accounts, add_org):
    fns = consortium.functions
    add_org("org-2", accounts[2])
    proposal_id = propose(chain, consortium, fns.proposeThresholdChange(10_000), accounts[1])
    expires_at = fns.proposal(proposal_id).call()[3]

    chain.advance_time(expires_at - chain.latest_timestamp())
    assert chain.latest_timestamp() >= expires_at

    with chain.reverts("ProposalExpired", proposal_id):
        fns.approve(proposal_id).transact({"from": accounts[2]})
    with chain.reverts("ProposalExpired", proposal_id):
        fns.execute(proposal_id).transact({"from": accounts[1]})


def test_proposal_within_lifetime_is_still_open(chain, consortium, accounts, add_org):
    fns = consortium.functions
    add_org("org-2", accounts[2])
    proposal_id = propose(chain, consortium, fns.proposeThresholdChange(10_000), accounts[1])
    chain.advance_time(1_800)
    chain.transact(fns.approve(proposal_id), accounts[2])
    chain.transact(fns.execute(proposal_id), accounts[2])


def test_executed_proposal_is_closed(chain, consortium, accounts):
    fns = consortium.functions
    proposal_id = propose(chain, consortium, fns.proposeThresholdChange(10_000), accounts[1])
    chain.transact(fns.execute(proposal_id), accounts[1])
    with chain.reverts("ProposalAlreadyExecuted", proposal_id):
        fns.execute(proposal_id).transact({"from": accounts[1]})
    with chain.reverts("ProposalAlreadyExecuted", proposal_id):
        fns.approve(proposal_id).transact({"from": accounts[1]})


def test_unknown_proposal(chain, consortium, accounts):
    fns = consortium.functions
    propose(chain, consortium, fns.proposeThresholdChange(10_000), accounts[1])
    for proposal_id in (0, 2, 2**256 - 1):
        with chain.reverts("UnknownProposal", proposal_id):
            fns.approve(proposal_id).transact({"from": accounts[1]})
        with chain.reverts("UnknownProposal", proposal_id):
            fns.execute(proposal_id).transact({"from": accounts[1]})
        with chain.reverts("UnknownProposal", proposal_id):
            fns.proposal(proposal_id).call()
        with chain.reverts("UnknownProposal", proposal_id):
            fns.approvalCount(proposal_id).call()
    assert not fns.hasApproved(2, 1).call()


def test_only_org_admins_take_part(chain, consortium, accounts, roles):
    fns = consortium.functions
    chain.grant(fns, roles["AGENT"], accounts[5], accounts[1])
    proposal_id = propose(chain, consortium, fns.proposeThresholdChange(10_000), accounts[1])
    for caller in (accounts[0], accounts[5], accounts[7]):  # consortium admin, member, outsider
        with chain.reverts("NotOrganizationAdmin", caller):
            fns.proposeAddOrganization("x", accounts[8]).transact({"from": caller})
        with chain.reverts("NotOrganizationAdmin", caller):
            fns.approve(proposal_id).transact({"from": caller})
        with chain.reverts("NotOrganizationAdmin", caller):
            fns.execute(proposal_id).transact({"from": caller})


def test_proposals_are_validated_when_proposed(chain, consortium, accounts, add_org):
    fns = consortium.functions
    founder = accounts[1]
    cases = [
        (fns.proposeAddOrganization("", accounts[5]), ("EmptyOrganizationName",)),
        (
            fns.proposeAddOrganization("founder", accounts[5]),
            ("DuplicateOrganizationName", "founder"),
        ),
        (fns.proposeAddOrganization("new", ZERO), ("ZeroAddress",)),
        (fns.proposeAddOrganization("new", founder), ("AccountInOtherOrganization", founder, 1)),
        (fns.proposeSuspendOrganization(0), ("UnknownOrganization", 0)),
        (fns.proposeSuspendOrganization(7), ("UnknownOrganization", 7)),
        (fns.proposeSuspendOrganization(1), ("LastActiveOrganization", 1)),
        (fns.proposeReactivateOrganization(1), ("OrganizationAlreadyActive", 1)),
        (fns.proposeReactivateOrganization(7), ("UnknownOrganization", 7)),
        (fns.proposeThresholdChange(0), ("InvalidThreshold", 0)),
        (fns.proposeThresholdChange(10_001), ("InvalidThreshold", 10_001)),
    ]
    for call, error in cases:
        with chain.reverts(*error):
            call.transact({"from": founder})
    assert fns.proposalCount().call() == 0


def test_proposals_are_revalidated_when_executed(chain, consortium, accounts):
    fns = consortium.functions
    founder = accounts[1]
    first = propose(chain, consortium, fns.proposeAddOrganization("dup", accounts[2]), founder)
    second = propose(chain, consortium, fns.proposeAddOrganization("dup", accounts[3]), founder)
    third = propose(chain, consortium, fns.proposeAddOrganization("other", accounts[2]), founder)
    chain.transact(fns.execute(first), founder)
    # Two organisations now: the new one's approval is needed as well.
    chain.transact(fns.approve(second), accounts[2])
    chain.transact(fns.approve(third), accounts[2])

    with chain.reverts("DuplicateOrganizationName", "dup"):
        fns.execute(second).transact({"from": founder})
    with chain.reverts("AccountInOtherOrganization", accounts[2], 2):
        fns.execute(third).transact({"from": founder})
    # A failed execution leaves the proposal open.
    assert fns.proposal(second).call()[4] is False


def test_suspend_and_reactivate_organization(chain, consortium, accounts, roles, add_org):
    fns = consortium.functions
    org2 = add_org("org-2", accounts[2])
    add_org("org-3", accounts[3])

    suspend = propose(chain, consortium, fns.proposeSuspendOrganization(org2), accounts[1])
    chain.transact(fns.approve(suspend), accounts[3])
    receipt = chain.transact(fns.execute(suspend), accounts[3])
    assert chain.event_names(consortium, receipt) == ["OrganizationSuspended", "ProposalExecuted"]
    assert chain.events(consortium, "OrganizationSuspended", receipt) == [{"orgId": org2}]
    assert fns.organization(org2).call()[3] is False
    assert fns.activeOrganizationCount().call() == 2
    assert fns.organizationCount().call() == 3

    # The suspended org's admin takes no part, and the org cannot be suspended twice.
    reactivate = propose(chain, consortium, fns.proposeReactivateOrganization(org2), accounts[1])
    with chain.reverts("OrganizationNotActive", org2):
        fns.approve(reactivate).transact({"from": accounts[2]})
    with chain.reverts("OrganizationNotActive", org2):
        fns.execute(reactivate).transact({"from": accounts[2]})
    with chain.reverts("OrganizationNotActive", org2):
        fns.proposeSuspendOrganization(org2).transact({"from": accounts[1]})

    chain.transact(fns.approve(reactivate), accounts[3])
    receipt = chain.transact(fns.execute(reactivate), accounts[1])
    assert chain.event_names(consortium, receipt) == ["OrganizationReactivated", "ProposalExecuted"]
    assert chain.events(consortium, "OrganizationReactivated", receipt) == [{"orgId": org2}]
    assert fns.organization(org2).call()[3] is True
    assert fns.activeOrganizationCount().call() == 3
    assert fns.hasActiveRole(roles["ORG_ADMIN"], accounts[2]).call()


def test_last_active_org_is_never_suspended(chain, consortium, accounts, add_org):
    fns = consortium.functions
    org2 = add_org("org-2", accounts[2])
    # Each org proposes suspending the other; both approve both.
    suspend_2 = propose(chain, consortium, fns.proposeSuspendOrganization(org2), accounts[1])
    suspend_1 = propose(chain, consortium, fns.proposeSuspendOrganization(1), accounts[2])
    chain.transact(fns.approve(suspend_2), accounts[2])
    chain.transact(fns.approve(suspend_1), accounts[1])
    chain.transact(fns.execute(suspend_2), accounts[1])

    # Org 1 is now the only active org: its own approval meets the threshold of 1, but the
    # change itself is refused.
    assert fns.requiredApprovals().call() == 1
    assert fns.approvalCount(suspend_1).call() == 1
    with chain.reverts("LastActiveOrganization", 1):
        fns.execute(suspend_1).transact({"from": accounts[1]})
    assert fns.activeOrganizationCount().call() == 1


def test_approvals_of_suspended_orgs_do_not_count(chain, consortium, accounts, add_org):
    fns = consortium.functions
    org2 = add_org("org-2", accounts[2])
    add_org("org-3", accounts[3])

    pending = propose(chain, consortium, fns.proposeThresholdChange(6_000), accounts[1])
    chain.transact(fns.approve(pending), accounts[2])
    assert fns.approvalCount(pending).call() == 2

    suspend = propose(chain, consortium, fns.proposeSuspendOrganization(org2), accounts[1])
    chain.transact(fns.approve(suspend), accounts[3])
    chain.transact(fns.execute(suspend), accounts[1])

    assert fns.hasApproved(pending, org2).call()
    assert fns.approvalCount(pending).call() == 1
    assert fns.requiredApprovals().call() == 2  # ceil(2 * 0.5001)
    with chain.reverts("BelowThreshold", pending, 1, 2):
        fns.execute(pending).transact({"from": accounts[1]})

    receipt = chain.transact(fns.approve(pending), accounts[3])
    assert chain.events(consortium, "ProposalApproved", receipt)[0]["approvals"] == 2
    chain.transact(fns.execute(pending), accounts[3])
    assert fns.thresholdBps().call() == 6000


def test_unanimity_threshold(chain, accounts):
    consortium, _ = chain.deploy(threshold_bps=10_000)
    fns = consortium.functions
    proposal_id = propose(
        chain, consortium, fns.proposeAddOrganization("o2", accounts[2]), accounts[1]
    )
    chain.transact(fns.execute(proposal_id), accounts[1])
    proposal_id = propose(chain, consortium, fns.proposeThresholdChange(5_000), accounts[2])
    with chain.reverts("BelowThreshold", proposal_id, 1, 2):
        fns.execute(proposal_id).transact({"from": accounts[2]})
    chain.transact(fns.approve(proposal_id), accounts[1])
    chain.transact(fns.execute(proposal_id), accounts[2])
    assert fns.requiredApprovals().call() == 1  # ceil(2 * 0.5)
