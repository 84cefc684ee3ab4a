"""OrganizationRoles: an account joins an organisation only with its own consent.

Its own transaction (`acceptMembership`, then the admin's `grantRole`) or its EIP-712
`JoinOrganization` signature (`grantRoleBySig`). So a revoked account cannot be pulled into another
organisation, and no organisation can block an AddOrganization proposal by pulling its pending
admin in first.
"""

from __future__ import annotations

from typing import Any

from tests.contracts.typed_data import domain, labelled_key, sign, typed_data

JOIN = "JoinOrganization(address account,uint64 orgId,bytes32 role,uint256 nonce,uint256 deadline)"
FAR = 2**40


def join_signature(
    chain: Any, consortium: Any, key: Any, org_id: int, role: bytes, nonce: int, deadline: int
) -> bytes:
    """`key` signs JoinOrganization, written independently of the gateway's typed data."""
    message = {
        "account": key.address,
        "orgId": org_id,
        "role": "0x" + role.hex(),
        "nonce": nonce,
        "deadline": deadline,
    }
    signing_domain = domain("Consortium", chain.w3.eth.chain_id, consortium.address)
    return sign(key, typed_data(JOIN, message, signing_domain))


def test_a_grant_to_an_account_that_did_not_agree_is_refused(chain, consortium, accounts, roles):
    fns = consortium.functions
    with chain.reverts("MembershipNotAccepted", accounts[5], 1):
        fns.grantRole(roles["AGENT"], accounts[5]).transact({"from": accounts[1]})
    assert fns.organizationOf(accounts[5]).call() == 0


def test_the_accounts_own_transaction_lets_one_organisation_add_it_once(
    chain, consortium, accounts, roles, add_org
):
    fns = consortium.functions
    org2 = add_org("org-2", accounts[2])
    receipt = chain.transact(fns.acceptMembership(1), accounts[5])
    assert chain.events(consortium, "MembershipAccepted", receipt) == [
        {"account": accounts[5], "orgId": 1}
    ]
    # Agreeing to organisation 1 is no agreement to organisation 2.
    with chain.reverts("MembershipNotAccepted", accounts[5], org2):
        fns.grantRole(roles["AGENT"], accounts[5]).transact({"from": accounts[2]})
    chain.transact(fns.grantRole(roles["AGENT"], accounts[5]), accounts[1])
    assert fns.membershipAcceptance(accounts[5]).call() == 0  # used up
    # Revoked, it is free again, and the old agreement does not bring it back.
    chain.transact(fns.revokeRole(roles["AGENT"], accounts[5]), accounts[1])
    with chain.reverts("MembershipNotAccepted", accounts[5], 1):
        fns.grantRole(roles["AGENT"], accounts[5]).transact({"from": accounts[1]})
    # Withdrawing an agreement, and agreeing to an unknown organisation.
    chain.transact(fns.acceptMembership(org2), accounts[6])
    chain.transact(fns.acceptMembership(0), accounts[6])
    with chain.reverts("MembershipNotAccepted", accounts[6], org2):
        fns.grantRole(roles["AGENT"], accounts[6]).transact({"from": accounts[2]})
    with chain.reverts("UnknownOrganization", 9):
        fns.acceptMembership(9).transact({"from": accounts[6]})


def test_a_join_signature_adds_the_account_once_for_that_organisation_and_role(
    chain, consortium, accounts, roles, add_org
):
    fns = consortium.functions
    org2 = add_org("org-2", accounts[2])
    key = labelled_key("membership", "signer")  # unfunded: it never sends a transaction
    agent = roles["AGENT"]
    signature = join_signature(chain, consortium, key, 1, agent, 0, FAR)
    # Another organisation, another role, or another account cannot use it.
    with chain.reverts("InvalidMembershipSignature", key.address):
        fns.grantRoleBySig(agent, key.address, FAR, signature).transact({"from": accounts[2]})
    with chain.reverts("InvalidMembershipSignature", key.address):
        fns.grantRoleBySig(roles["ORG_ADMIN"], key.address, FAR, signature).transact(
            {"from": accounts[1]}
        )
    with chain.reverts("InvalidMembershipSignature", accounts[7]):
        fns.grantRoleBySig(agent, accounts[7], FAR, signature).transact({"from": accounts[1]})

    receipt = chain.transact(fns.grantRoleBySig(agent, key.address, FAR, signature), accounts[1])
    assert chain.event_names(consortium, receipt) == ["MemberAdded", "RoleGranted"]
    assert fns.organizationOf(key.address).call() == 1
    assert fns.membershipNonces(key.address).call() == 1
    # Revoked, the same signature cannot pull it back (its nonce is used), into any organisation.
    chain.transact(fns.revokeRole(agent, key.address), accounts[1])
    with chain.reverts("InvalidMembershipSignature", key.address):
        fns.grantRoleBySig(agent, key.address, FAR, signature).transact({"from": accounts[1]})
    with chain.reverts("InvalidMembershipSignature", key.address):
        fns.grantRoleBySig(agent, key.address, FAR, signature).transact({"from": accounts[2]})
    # A signature for organisation 2 lets organisation 2 add it.
    fresh = join_signature(chain, consortium, key, org2, agent, 1, FAR)
    chain.transact(fns.grantRoleBySig(agent, key.address, FAR, fresh), accounts[2])
    assert fns.organizationOf(key.address).call() == org2


def test_an_expired_join_signature_is_refused(chain, consortium, accounts, roles):
    fns = consortium.functions
    key = labelled_key("membership", "late")
    deadline = chain.latest_timestamp() - 1
    signature = join_signature(chain, consortium, key, 1, roles["AGENT"], 0, deadline)
    with chain.reverts("MembershipSignatureExpired", deadline):
        fns.grantRoleBySig(roles["AGENT"], key.address, deadline, signature).transact(
            {"from": accounts[1]}
        )


def test_the_join_digest_is_the_eip712_digest_of_the_typed_data(chain, consortium, roles):
    from eth_account.messages import encode_typed_data
    from eth_utils import keccak

    key = labelled_key("membership", "digest")
    message = {
        "account": key.address,
        "orgId": 1,
        "role": "0x" + roles["AGENT"].hex(),
        "nonce": 0,
        "deadline": FAR,
    }
    signing_domain = domain("Consortium", chain.w3.eth.chain_id, consortium.address)
    typed = typed_data(JOIN, message, signing_domain)
    signable = encode_typed_data(full_message=typed)
    expected = keccak(b"\x19\x01" + signable.header + signable.body)
    digest = consortium.functions.hashJoinOrganization(key.address, 1, roles["AGENT"], 0, FAR)
    assert bytes(digest.call()) == expected


def test_a_pending_admin_cannot_be_pulled_away_to_block_the_proposal(
    chain, consortium, accounts, roles, add_org
):
    """Organisation 2's admin tries to block the proposal adding organisation 3 by granting its
    pending admin a role first: refused, and the proposal executes."""
    fns = consortium.functions
    add_org("org-2", accounts[2])
    pending = accounts[8]
    receipt = chain.transact(fns.proposeAddOrganization("org-3", pending), accounts[1])
    proposal_id = chain.events(consortium, "ProposalCreated", receipt)[0]["proposalId"]
    with chain.reverts("MembershipNotAccepted", pending, 2):
        fns.grantRole(roles["AGENT"], pending).transact({"from": accounts[2]})
    with chain.reverts("InvalidMembershipSignature", pending):
        fns.grantRoleBySig(roles["AGENT"], pending, FAR, b"\x00" * 65).transact(
            {"from": accounts[2]}
        )
    chain.transact(fns.approve(proposal_id), accounts[2])
    executed = chain.transact(fns.execute(proposal_id), accounts[1])
    assert chain.events(consortium, "OrganizationAdded", executed)[0]["admin"] == pending
    assert fns.organizationOf(pending).call() == 3
