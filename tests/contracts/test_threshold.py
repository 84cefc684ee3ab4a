"""Required approvals: ceil(active organisations * threshold / 10000)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def reference_required(organizations: int, bps: int) -> int:
    """Python reference: the smallest whole number of approvals >= organizations * bps / 10000."""
    return -(-organizations * bps // 10_000)


@pytest.mark.parametrize(
    ("bps", "expected"),
    [
        (5_001, [1, 2, 2, 3, 3]),  # strict majority
        (5_000, [1, 1, 2, 2, 3]),  # half
        (6_667, [1, 2, 3, 3, 4]),  # two thirds
        (10_000, [1, 2, 3, 4, 5]),  # unanimity
        (1, [1, 1, 1, 1, 1]),  # any one organisation
    ],
)
def test_required_approvals_for_one_to_five_orgs(chain, accounts, add_org, bps, expected):
    del add_org  # this test deploys its own consortium
    consortium, _ = chain.deploy(threshold_bps=bps)
    fns = consortium.functions
    admins = {1: accounts[1]}
    observed = [fns.requiredApprovals().call()]
    for n in range(2, 6):
        receipt = chain.transact(fns.proposeAddOrganization(f"org-{n}", accounts[n]), accounts[1])
        proposal_id = chain.events(consortium, "ProposalCreated", receipt)[0]["proposalId"]
        for org_id in sorted(admins)[1:]:
            if fns.approvalCount(proposal_id).call() >= fns.requiredApprovals().call():
                break
            chain.transact(fns.approve(proposal_id), admins[org_id])
        chain.transact(fns.execute(proposal_id), accounts[1])
        admins[n] = accounts[n]
        assert fns.activeOrganizationCount().call() == n
        observed.append(fns.requiredApprovals().call())
    assert observed == expected
    assert observed == [reference_required(n, bps) for n in range(1, 6)]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    organizations=st.integers(min_value=0, max_value=2**64 - 1),
    bps=st.integers(min_value=1, max_value=10_000),
)
def test_required_approvals_match_reference(consortium, organizations, bps):
    required = consortium.functions.computeRequiredApprovals(organizations, bps).call()
    assert required == reference_required(organizations, bps)
    if organizations >= 1:
        # Never zero, never more than all organisations, and strictly above the share for > 50 %.
        assert 1 <= required <= organizations
        if bps > 5_000:
            assert required * 2 > organizations
