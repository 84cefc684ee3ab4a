"""PurposeRegistry sharing and the processing rule (`purposeUse`, `ConsentLedger.mayProcess`).

A purpose is used by its controller organisation and by the organisations it shares it with; a
retired purpose by nobody. Consents themselves are covered by test_consent_ledger and, through the
gateway, by tests/adversarial/consortium/test_processing_rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak

ABI_DIR = Path(__file__).resolve().parents[2] / "abi"
CONSENT, CONTRACT, LEGAL_OBLIGATION, LEGITIMATE_INTEREST = range(4)
ALLOWED, UNKNOWN_PURPOSE, PURPOSE_RETIRED, PURPOSE_NOT_SHARED, NO_LIVE_CONSENT = range(5)
OWN = keccak(text="org1.support")
ANYTHING = keccak(text="org2.anything")
NEWSLETTER = keccak(text="newsletter")
CUSTOMER = keccak(text="customer:sharing")


def _artifact(name: str) -> dict[str, Any]:
    return dict(json.loads((ABI_DIR / f"{name}.json").read_text()))


class World:
    def __init__(self, chain: Any, consortium: Any, add_org: Any) -> None:
        accounts = chain.accounts
        self.chain = chain
        self.consortium = consortium
        self.admin1, self.admin2, self.admin3 = accounts[1], accounts[2], accounts[3]
        assert add_org("org-2", self.admin2) == 2
        assert add_org("org-3", self.admin3) == 3
        self.registry, _ = chain.deploy_artifact(
            _artifact("CustomerRegistry"), consortium.address, 172_800
        )
        self.purposes, _ = chain.deploy_artifact(_artifact("PurposeRegistry"), consortium.address)
        self.ledger, _ = chain.deploy_artifact(
            _artifact("ConsentLedger"),
            consortium.address,
            self.registry.address,
            self.purposes.address,
            3600,
        )
        p = self.purposes.functions
        chain.transact(p.definePurpose(OWN, keccak(text="n1"), CONTRACT), self.admin1)
        chain.transact(p.definePurpose(NEWSLETTER, keccak(text="n2"), CONSENT), self.admin1)
        chain.transact(
            p.definePurpose(ANYTHING, keccak(text="n3"), LEGITIMATE_INTEREST), self.admin2
        )

    def may(self, purpose: bytes, org: int) -> int:
        return int(self.ledger.functions.mayProcess(CUSTOMER, purpose, org).call())

    def reverts(self, name: str, *args: Any) -> Any:
        return self.chain.reverts(name, *args, abi=self.purposes.abi)


@pytest.fixture
def world(chain, consortium, add_org) -> World:
    return World(chain, consortium, add_org)


def test_another_organisations_purpose_allows_nothing_until_shared(world: World) -> None:
    p = world.purposes.functions
    assert world.may(OWN, 1) == ALLOWED  # own purpose, contract basis: no consent needed
    assert world.may(ANYTHING, 1) == PURPOSE_NOT_SHARED  # org 2's legitimate interest
    assert world.may(ANYTHING, 2) == ALLOWED
    assert world.may(keccak(text="nothing"), 1) == UNKNOWN_PURPOSE
    assert p.purposeUse(NEWSLETTER, 1).call() == [ALLOWED, True]
    assert world.may(NEWSLETTER, 1) == NO_LIVE_CONSENT

    receipt = world.chain.transact(p.sharePurpose(ANYTHING, 1), world.admin2)
    assert world.chain.events(world.purposes, "PurposeShared", receipt) == [
        {"purposeId": ANYTHING, "controllerOrg": 2, "orgId": 1}
    ]
    assert p.isSharedWith(ANYTHING, 1).call()
    assert world.may(ANYTHING, 1) == ALLOWED
    assert world.may(ANYTHING, 3) == PURPOSE_NOT_SHARED  # shared with 1 only

    receipt = world.chain.transact(p.unsharePurpose(ANYTHING, 1), world.admin2)
    assert world.chain.events(world.purposes, "PurposeUnshared", receipt) == [
        {"purposeId": ANYTHING, "controllerOrg": 2, "orgId": 1}
    ]
    assert world.may(ANYTHING, 1) == PURPOSE_NOT_SHARED


def test_a_retired_purpose_allows_nobody(world: World) -> None:
    p = world.purposes.functions
    world.chain.transact(p.sharePurpose(ANYTHING, 1), world.admin2)
    world.chain.transact(p.retirePurpose(ANYTHING), world.admin2)
    assert world.may(ANYTHING, 1) == PURPOSE_RETIRED
    assert world.may(ANYTHING, 2) == PURPOSE_RETIRED
    with world.reverts("PurposeIsRetired", ANYTHING):
        p.sharePurpose(ANYTHING, 3).transact({"from": world.admin2})
    # Unsharing stays possible after retirement.
    world.chain.transact(p.unsharePurpose(ANYTHING, 1), world.admin2)
    assert not p.isSharedWith(ANYTHING, 1).call()


def test_only_the_controllers_admin_shares_and_unshares(world: World) -> None:
    p = world.purposes.functions
    # Organisation 1's admin cannot share organisation 2's purpose with itself.
    with world.reverts("NotPurposeController", ANYTHING, 1):
        p.sharePurpose(ANYTHING, 1).transact({"from": world.admin1})
    world.chain.transact(p.sharePurpose(ANYTHING, 3), world.admin2)
    with world.reverts("NotPurposeController", ANYTHING, 1):
        p.unsharePurpose(ANYTHING, 3).transact({"from": world.admin1})
    outsider = world.chain.accounts[7]
    with world.reverts("AccessControlUnauthorizedAccount", outsider, keccak(text="ORG_ADMIN")):
        p.sharePurpose(ANYTHING, 1).transact({"from": outsider})
    with world.reverts("UnknownPurpose", NEWSLETTER[:31] + b"\x00"):
        p.sharePurpose(NEWSLETTER[:31] + b"\x00", 1).transact({"from": world.admin1})


def test_sharing_refusals(world: World) -> None:
    p = world.purposes.functions
    for org in (0, 2, 9):  # none, the controller itself, unknown
        with world.reverts("InvalidShareOrganization", org):
            p.sharePurpose(ANYTHING, org).transact({"from": world.admin2})
    world.chain.transact(p.sharePurpose(ANYTHING, 1), world.admin2)
    with world.reverts("PurposeAlreadyShared", ANYTHING, 1):
        p.sharePurpose(ANYTHING, 1).transact({"from": world.admin2})
    with world.reverts("PurposeNotSharedWith", ANYTHING, 3):
        p.unsharePurpose(ANYTHING, 3).transact({"from": world.admin2})
