"""AccountPermissioning: Besu's `transactionAllowed` follows organisation membership."""

from __future__ import annotations

ZERO = "0x0000000000000000000000000000000000000000"


def allowed(consortium, sender, target=ZERO, payload=b"") -> bool:
    return bool(
        consortium.functions.transactionAllowed(sender, target, 0, 0, 21_000, payload).call()
    )


def test_members_non_members_and_consortium_admin(chain, consortium, accounts, roles):
    fns = consortium.functions
    chain.grant(fns, roles["AGENT"], accounts[5], accounts[1])

    assert allowed(consortium, accounts[1])  # founder org admin
    assert allowed(consortium, accounts[5])  # member with a delegated role
    assert allowed(consortium, accounts[0])  # consortium admin, in no organisation
    assert not allowed(consortium, accounts[7])  # outsider
    assert not allowed(consortium, ZERO)
    # Only the sender matters: target, value, gas and payload are ignored.
    assert allowed(consortium, accounts[5], consortium.address, b"\x12\x34" * 40)
    assert not allowed(consortium, accounts[7], consortium.address, b"\x12\x34")


def test_revoking_last_role_revokes_permission(chain, consortium, accounts, roles):
    fns = consortium.functions
    chain.grant(fns, roles["AGENT"], accounts[5], accounts[1])
    chain.transact(fns.revokeRole(roles["AGENT"], accounts[5]), accounts[1])
    assert not allowed(consortium, accounts[5])


def test_suspended_members_are_refused_until_reactivated(
    chain, consortium, accounts, roles, add_org
):
    fns = consortium.functions
    org2 = add_org("merchant-co", accounts[2])
    chain.grant(fns, roles["MERCHANT"], accounts[6], accounts[2])
    assert allowed(consortium, accounts[6])

    suspend = chain.transact(fns.proposeSuspendOrganization(org2), accounts[1])
    proposal_id = chain.events(consortium, "ProposalCreated", suspend)[0]["proposalId"]
    chain.transact(fns.approve(proposal_id), accounts[2])
    chain.transact(fns.execute(proposal_id), accounts[1])

    assert not allowed(consortium, accounts[2])
    assert not allowed(consortium, accounts[6])
    assert allowed(consortium, accounts[1])

    reactivate = chain.transact(fns.proposeReactivateOrganization(org2), accounts[1])
    proposal_id = chain.events(consortium, "ProposalCreated", reactivate)[0]["proposalId"]
    chain.transact(fns.execute(proposal_id), accounts[1])  # one active org: 1 approval
    assert allowed(consortium, accounts[6])


def test_consortium_admin_in_suspended_org_keeps_permission(chain, accounts, roles):
    # The deployer is both consortium admin and admin of a second organisation.
    consortium, _ = chain.deploy(founder_admin=accounts[1], sender=accounts[0])
    fns = consortium.functions
    receipt = chain.transact(fns.proposeAddOrganization("ops", accounts[0]), accounts[1])
    proposal_id = chain.events(consortium, "ProposalCreated", receipt)[0]["proposalId"]
    chain.transact(fns.execute(proposal_id), accounts[1])
    receipt = chain.transact(fns.proposeSuspendOrganization(2), accounts[1])
    proposal_id = chain.events(consortium, "ProposalCreated", receipt)[0]["proposalId"]
    chain.transact(fns.approve(proposal_id), accounts[0])
    chain.transact(fns.execute(proposal_id), accounts[1])

    assert not fns.isActiveMember(accounts[0]).call()
    assert not fns.hasActiveRole(roles["CONSORTIUM_ADMIN"], accounts[0]).call()
    assert allowed(consortium, accounts[0])
