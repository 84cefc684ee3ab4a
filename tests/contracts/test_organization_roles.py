"""OrganizationRoles: deployment, membership, delegated role grants and their refusals."""

from __future__ import annotations

import pytest
from web3 import Web3

ZERO = "0x0000000000000000000000000000000000000000"
DEFAULT_ADMIN_ROLE = bytes(32)


def test_deployment_creates_founder_org_and_consortium_admin(chain, deployment, accounts, roles):
    consortium, receipt = deployment
    fns = consortium.functions
    deployer, founder = accounts[0], accounts[1]

    assert chain.event_names(consortium, receipt) == [
        "ThresholdChanged",
        "RoleGranted",
        "OrganizationAdded",
        "MemberAdded",
        "RoleGranted",
    ]
    assert chain.events(consortium, "ThresholdChanged", receipt) == [{"oldBps": 0, "newBps": 5001}]
    granted = chain.events(consortium, "RoleGranted", receipt)
    assert granted == [
        {"role": roles["CONSORTIUM_ADMIN"], "account": deployer, "sender": deployer},
        {"role": roles["ORG_ADMIN"], "account": founder, "sender": deployer},
    ]
    assert chain.events(consortium, "OrganizationAdded", receipt) == [
        {"orgId": 1, "name": "founder", "admin": founder}
    ]
    assert chain.events(consortium, "MemberAdded", receipt) == [{"orgId": 1, "account": founder}]

    assert fns.organization(1).call() == (1, "founder", founder, True)
    assert fns.organizationCount().call() == 1
    assert fns.activeOrganizationCount().call() == 1
    assert fns.organizationIdByName("founder").call() == 1
    assert fns.organizationIdByName("nobody").call() == 0
    assert fns.organizationOf(founder).call() == 1
    assert fns.organizationOf(deployer).call() == 0
    assert fns.membersOf(1).call() == [founder]
    assert fns.organizationAdminCount(1).call() == 1
    assert fns.hasRole(roles["CONSORTIUM_ADMIN"], deployer).call()
    assert fns.hasRole(roles["ORG_ADMIN"], founder).call()
    assert fns.thresholdBps().call() == 5001
    assert fns.proposalLifetime().call() == 3600
    assert fns.proposalCount().call() == 0


def test_role_constants_are_keccak_of_their_names(roles):
    for name, role in roles.items():
        assert role == Web3.keccak(text=name)


def test_deployer_may_be_the_founder_admin(chain, accounts, roles):
    consortium, _ = chain.deploy(founder_admin=accounts[0], sender=accounts[0])
    fns = consortium.functions
    assert fns.hasRole(roles["CONSORTIUM_ADMIN"], accounts[0]).call()
    assert fns.hasRole(roles["ORG_ADMIN"], accounts[0]).call()
    assert fns.organizationOf(accounts[0]).call() == 1


@pytest.mark.parametrize(
    ("name", "admin_index", "bps", "lifetime", "error"),
    [
        ("", 1, 5001, 3600, ("EmptyOrganizationName",)),
        ("founder", None, 5001, 3600, ("ZeroAddress",)),
        ("founder", 1, 0, 3600, ("InvalidThreshold", 0)),
        ("founder", 1, 10_001, 3600, ("InvalidThreshold", 10_001)),
        ("founder", 1, 5001, 0, ("InvalidProposalLifetime", 0)),
    ],
)
def test_constructor_refusals(chain, accounts, name, admin_index, bps, lifetime, error):
    admin = ZERO if admin_index is None else accounts[admin_index]
    with chain.reverts(*error):
        chain.deploy(founder_name=name, founder_admin=admin, threshold_bps=bps, lifetime=lifetime)


def test_threshold_bounds_are_accepted(chain):
    for bps in (1, 10_000):
        contract, _ = chain.deploy(threshold_bps=bps)
        assert contract.functions.thresholdBps().call() == bps


# ------------------------------------------------------------------------------------------------
# Granting
# ------------------------------------------------------------------------------------------------


def test_org_admin_grants_role_to_new_member(chain, consortium, accounts, roles):
    fns = consortium.functions
    founder, agent = accounts[1], accounts[5]

    receipt = chain.grant(fns, roles["AGENT"], agent, founder)

    assert chain.event_names(consortium, receipt) == ["MemberAdded", "RoleGranted"]
    assert chain.events(consortium, "MemberAdded", receipt) == [{"orgId": 1, "account": agent}]
    assert chain.events(consortium, "RoleGranted", receipt) == [
        {"role": roles["AGENT"], "account": agent, "sender": founder}
    ]
    assert fns.organizationOf(agent).call() == 1
    assert sorted(fns.membersOf(1).call()) == sorted([founder, agent])
    assert fns.hasRole(roles["AGENT"], agent).call()
    assert fns.hasActiveRole(roles["AGENT"], agent).call()
    assert fns.getRoleMembers(roles["AGENT"]).call() == [agent]

    # A second role for an existing member: no new membership.
    receipt = chain.grant(fns, roles["MARKETER"], agent, founder)
    assert chain.event_names(consortium, receipt) == ["RoleGranted"]

    # Granting a held role again changes nothing and emits nothing.
    receipt = chain.grant(fns, roles["MARKETER"], agent, founder)
    assert chain.event_names(consortium, receipt) == []


def test_org_admin_can_appoint_another_org_admin(chain, consortium, accounts, roles):
    fns = consortium.functions
    chain.grant(fns, roles["ORG_ADMIN"], accounts[5], accounts[1])
    assert fns.organizationAdminCount(1).call() == 2
    # The new admin acts for the same organisation.
    chain.grant(fns, roles["AUDITOR"], accounts[6], accounts[5])
    assert fns.organizationOf(accounts[6]).call() == 1


def test_every_named_role_except_consortium_admin_is_delegable(chain, consortium, accounts, roles):
    fns = consortium.functions
    for name, role in roles.items():
        if name == "CONSORTIUM_ADMIN":
            continue
        chain.grant(fns, role, accounts[5], accounts[1])
        assert fns.hasRole(role, accounts[5]).call()
        assert fns.getRoleAdmin(role).call() == roles["ORG_ADMIN"]
    assert fns.getRoleAdmin(roles["CONSORTIUM_ADMIN"]).call() == DEFAULT_ADMIN_ROLE


def test_grant_to_account_of_other_org_is_refused(chain, consortium, accounts, roles, add_org):
    fns = consortium.functions
    org2 = add_org("merchant-co", accounts[2])
    chain.grant(fns, roles["MERCHANT"], accounts[6], accounts[2])

    with chain.reverts("AccountInOtherOrganization", accounts[6], org2):
        fns.grantRole(roles["AGENT"], accounts[6]).transact({"from": accounts[1]})
    with chain.reverts("AccountInOtherOrganization", accounts[2], org2):
        fns.grantRole(roles["AGENT"], accounts[2]).transact({"from": accounts[1]})
    with chain.reverts("AccountInOtherOrganization", accounts[1], 1):
        fns.revokeRole(roles["ORG_ADMIN"], accounts[1]).transact({"from": accounts[2]})


def test_non_admin_cannot_grant_or_revoke(chain, consortium, accounts, roles):
    fns = consortium.functions
    chain.grant(fns, roles["AGENT"], accounts[5], accounts[1])

    # A member without ORG_ADMIN, an outsider, and the consortium admin.
    for caller in (accounts[5], accounts[7], accounts[0]):
        with chain.reverts("NotOrganizationAdmin", caller):
            fns.grantRole(roles["AGENT"], accounts[6]).transact({"from": caller})
        with chain.reverts("NotOrganizationAdmin", caller):
            fns.revokeRole(roles["AGENT"], accounts[5]).transact({"from": caller})


@pytest.mark.parametrize("role_name", ["CONSORTIUM_ADMIN", "DEFAULT_ADMIN_ROLE"])
def test_reserved_roles_are_not_delegable(chain, consortium, accounts, roles, role_name):
    fns = consortium.functions
    role = DEFAULT_ADMIN_ROLE if role_name == "DEFAULT_ADMIN_ROLE" else roles[role_name]
    with chain.reverts("RoleNotDelegable", role):
        fns.grantRole(role, accounts[5]).transact({"from": accounts[1]})
    with chain.reverts("RoleNotDelegable", role):
        fns.revokeRole(role, accounts[0]).transact({"from": accounts[1]})


def test_zero_address_is_refused(chain, consortium, accounts, roles):
    fns = consortium.functions
    with chain.reverts("ZeroAddress"):
        fns.grantRole(roles["AGENT"], ZERO).transact({"from": accounts[1]})
    with chain.reverts("ZeroAddress"):
        fns.revokeRole(roles["AGENT"], ZERO).transact({"from": accounts[1]})


def test_suspended_org_admin_is_refused(chain, consortium, accounts, roles, add_org):
    fns = consortium.functions
    org2 = add_org("merchant-co", accounts[2])
    chain.grant(fns, roles["MERCHANT"], accounts[6], accounts[2])
    proposal = chain.transact(fns.proposeSuspendOrganization(org2), accounts[1])
    proposal_id = chain.events(consortium, "ProposalCreated", proposal)[0]["proposalId"]
    chain.transact(fns.approve(proposal_id), accounts[2])  # two active orgs: both must approve
    chain.transact(fns.execute(proposal_id), accounts[1])

    with chain.reverts("OrganizationNotActive", org2):
        fns.grantRole(roles["AGENT"], accounts[7]).transact({"from": accounts[2]})
    with chain.reverts("OrganizationNotActive", org2):
        fns.revokeRole(roles["MERCHANT"], accounts[6]).transact({"from": accounts[2]})
    with chain.reverts("OrganizationNotActive", org2):
        fns.proposeThresholdChange(10_000).transact({"from": accounts[2]})
    # Roles of its members stay granted but are not in force.
    assert fns.hasRole(roles["MERCHANT"], accounts[6]).call()
    assert not fns.hasActiveRole(roles["MERCHANT"], accounts[6]).call()
    assert not fns.hasActiveRole(roles["ORG_ADMIN"], accounts[2]).call()
    assert fns.hasActiveRole(roles["ORG_ADMIN"], accounts[1]).call()


# ------------------------------------------------------------------------------------------------
# Revoking, renouncing, membership
# ------------------------------------------------------------------------------------------------


def test_revoking_last_role_removes_membership(chain, consortium, accounts, roles):
    fns = consortium.functions
    founder, member = accounts[1], accounts[5]
    chain.grant(fns, roles["AGENT"], member, founder)
    chain.grant(fns, roles["AUDITOR"], member, founder)

    receipt = chain.transact(fns.revokeRole(roles["AGENT"], member), founder)
    assert chain.event_names(consortium, receipt) == ["RoleRevoked"]
    assert chain.events(consortium, "RoleRevoked", receipt) == [
        {"role": roles["AGENT"], "account": member, "sender": founder}
    ]
    assert fns.organizationOf(member).call() == 1

    receipt = chain.transact(fns.revokeRole(roles["AUDITOR"], member), founder)
    assert chain.event_names(consortium, receipt) == ["RoleRevoked", "MemberRemoved"]
    assert chain.events(consortium, "MemberRemoved", receipt) == [{"orgId": 1, "account": member}]
    assert fns.organizationOf(member).call() == 0
    assert fns.membersOf(1).call() == [founder]

    # Revoking a role that is not held changes nothing.
    receipt = chain.transact(fns.revokeRole(roles["AUDITOR"], member), founder)
    assert chain.event_names(consortium, receipt) == []


def test_former_member_may_join_another_org(chain, consortium, accounts, roles, add_org):
    fns = consortium.functions
    org2 = add_org("merchant-co", accounts[2])
    chain.grant(fns, roles["AGENT"], accounts[5], accounts[1])
    chain.transact(fns.revokeRole(roles["AGENT"], accounts[5]), accounts[1])
    receipt = chain.grant(fns, roles["MERCHANT"], accounts[5], accounts[2])
    assert chain.events(consortium, "MemberAdded", receipt) == [
        {"orgId": org2, "account": accounts[5]}
    ]


def test_last_org_admin_cannot_be_revoked_or_renounced(chain, consortium, accounts, roles):
    fns = consortium.functions
    founder = accounts[1]
    with chain.reverts("LastOrganizationAdmin", 1):
        fns.revokeRole(roles["ORG_ADMIN"], founder).transact({"from": founder})
    with chain.reverts("LastOrganizationAdmin", 1):
        fns.renounceRole(roles["ORG_ADMIN"], founder).transact({"from": founder})

    # With a second admin, either may go.
    chain.grant(fns, roles["ORG_ADMIN"], accounts[5], founder)
    receipt = chain.transact(fns.renounceRole(roles["ORG_ADMIN"], founder), founder)
    assert chain.event_names(consortium, receipt) == ["RoleRevoked", "MemberRemoved"]
    assert fns.organizationAdminCount(1).call() == 1
    with chain.reverts("LastOrganizationAdmin", 1):
        fns.renounceRole(roles["ORG_ADMIN"], accounts[5]).transact({"from": accounts[5]})
    with chain.reverts("NotOrganizationAdmin", founder):
        fns.grantRole(roles["AGENT"], accounts[6]).transact({"from": founder})


def test_org_admin_revokes_another_admin(chain, consortium, accounts, roles):
    fns = consortium.functions
    chain.grant(fns, roles["ORG_ADMIN"], accounts[5], accounts[1])
    chain.transact(fns.revokeRole(roles["ORG_ADMIN"], accounts[1]), accounts[5])
    assert not fns.hasRole(roles["ORG_ADMIN"], accounts[1]).call()
    assert fns.organizationAdminCount(1).call() == 1
    assert fns.organization(1).call()[2] == accounts[1]  # the founding admin stays on record


def test_member_renounces_role(chain, consortium, accounts, roles):
    fns = consortium.functions
    chain.grant(fns, roles["RELAYER"], accounts[5], accounts[1])
    with chain.reverts("AccessControlBadConfirmation"):
        fns.renounceRole(roles["RELAYER"], accounts[1]).transact({"from": accounts[5]})
    receipt = chain.transact(fns.renounceRole(roles["RELAYER"], accounts[5]), accounts[5])
    assert chain.events(consortium, "RoleRevoked", receipt) == [
        {"role": roles["RELAYER"], "account": accounts[5], "sender": accounts[5]}
    ]
    assert chain.events(consortium, "MemberRemoved", receipt) == [
        {"orgId": 1, "account": accounts[5]}
    ]


def test_consortium_admin_may_renounce(chain, consortium, accounts, roles):
    fns = consortium.functions
    chain.transact(fns.renounceRole(roles["CONSORTIUM_ADMIN"], accounts[0]), accounts[0])
    assert not fns.hasRole(roles["CONSORTIUM_ADMIN"], accounts[0]).call()


# ------------------------------------------------------------------------------------------------
# Views
# ------------------------------------------------------------------------------------------------


def test_unknown_organization_views_revert(chain, consortium):
    fns = consortium.functions
    for org_id in (0, 2, 2**64 - 1):
        with chain.reverts("UnknownOrganization", org_id):
            fns.organization(org_id).call()
        with chain.reverts("UnknownOrganization", org_id):
            fns.membersOf(org_id).call()
        with chain.reverts("UnknownOrganization", org_id):
            fns.organizationAdminCount(org_id).call()


def test_has_active_role(chain, consortium, accounts, roles):
    fns = consortium.functions
    assert fns.hasActiveRole(roles["CONSORTIUM_ADMIN"], accounts[0]).call()
    assert fns.hasActiveRole(roles["ORG_ADMIN"], accounts[1]).call()
    assert not fns.hasActiveRole(roles["AGENT"], accounts[1]).call()
    assert not fns.hasActiveRole(roles["AGENT"], accounts[7]).call()
    assert fns.isActiveMember(accounts[1]).call()
    assert not fns.isActiveMember(accounts[0]).call()


def test_supports_interfaces(consortium):
    fns = consortium.functions
    ierc165 = bytes.fromhex("01ffc9a7")
    iaccess_control = bytes.fromhex("7965db0b")
    iaccess_control_enumerable = bytes.fromhex("5a05180f")
    # IAccountRules: only transactionAllowed(address,address,uint256,uint256,uint256,bytes).
    iaccount_rules = bytes.fromhex("936421d5")
    for interface_id in (ierc165, iaccess_control, iaccess_control_enumerable, iaccount_rules):
        assert fns.supportsInterface(interface_id).call()
    assert not fns.supportsInterface(bytes.fromhex("ffffffff")).call()
