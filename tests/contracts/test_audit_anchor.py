"""AuditAnchor: Merkle roots of the organisations' access logs, anchored by AUDITORs, contiguous
per organisation, and proofs verified with OpenZeppelin's MerkleProof against trees built by the
gateway's Python port of `StandardMerkleTree`.

The world: the default Consortium; organisation 1 ("founder", admin accounts[1]) with AUDITOR
accounts[2] and DATA_STEWARD accounts[4]; organisation 2 ("partner", admin accounts[3]) with
AUDITOR accounts[5]; an AuditAnchor bound to that Consortium. Built once per chain, each test's
changes undone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from eth_utils import keccak
from web3.contract import Contract

from crm_gateway.audit.merkle import MerkleTree, leaf_hash, verify_proof
from tests.contracts.conftest import ABI_DIR

GAS = 1_000_000


def entry(seq: int) -> tuple[int, bytes]:
    """An access-log entry as a leaf sees it: its seq and a 32-byte chain hash."""
    return seq, keccak(text=f"entry {seq}")


def tree_of(first: int, last: int) -> MerkleTree:
    return MerkleTree.of_entries(entry(seq) for seq in range(first, last + 1))


@dataclass
class World:
    chain: Any
    consortium: Contract
    anchor: Contract
    accounts: list[str]

    @property
    def admin1(self) -> str:
        return self.accounts[1]

    @property
    def auditor1(self) -> str:
        return self.accounts[2]

    @property
    def admin2(self) -> str:
        return self.accounts[3]

    @property
    def steward1(self) -> str:
        return self.accounts[4]

    @property
    def auditor2(self) -> str:
        return self.accounts[5]

    @property
    def fns(self) -> Any:
        return self.anchor.functions

    @property
    def auditor_role(self) -> bytes:
        return bytes(self.fns.AUDITOR().call())

    def reverts(self, name: str, *args: Any) -> Any:
        return self.chain.reverts(name, *args, abi=list(self.anchor.abi))

    def send(self, call: Any, sender: str) -> Any:
        return self.chain.transact(call, sender, gas=GAS)

    def put(self, tree: MerkleTree, first: int, last: int, sender: str | None = None) -> Any:
        count = last - first + 1
        return self.send(self.fns.anchor(tree.root, first, last, count), sender or self.auditor1)

    def anchored(self, receipt: Any) -> dict[str, Any]:
        (event,) = self.chain.events(self.anchor, "BatchAnchored", receipt)
        return event


@pytest.fixture(scope="module")
def anchor_artifact() -> dict[str, Any]:
    return dict(json.loads((ABI_DIR / "AuditAnchor.json").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def base_world(module_chain, add_organization, anchor_artifact) -> World:
    chain = module_chain
    accounts = chain.accounts
    consortium, _ = chain.deploy()
    fns = consortium.functions
    auditor, steward = (bytes(fns[name]().call()) for name in ("AUDITOR", "DATA_STEWARD"))
    chain.grant(fns, auditor, accounts[2], accounts[1])
    chain.grant(fns, steward, accounts[4], accounts[1])
    assert add_organization(chain, consortium, {1: accounts[1]}, "partner", accounts[3]) == 2
    chain.grant(fns, auditor, accounts[5], accounts[3])
    anchor, _ = chain.deploy_artifact(anchor_artifact, consortium.address)
    return World(chain, consortium, anchor, accounts)


def test_deployment_binds_the_consortium(world, anchor_artifact):
    assert world.fns.consortium().call() == world.consortium.address
    assert world.fns.batchCount().call() == 0
    assert world.fns.lastAnchoredSeq(1).call() == 0
    with world.reverts("InvalidConsortium", world.accounts[7]):
        world.chain.deploy_artifact(anchor_artifact, world.accounts[7])


def test_an_auditor_anchors_contiguous_batches_of_its_organisation(world):
    first = tree_of(1, 100)
    receipt = world.put(first, 1, 100)
    assert world.chain.event_names(world.anchor, receipt) == ["BatchAnchored"]
    assert world.anchored(receipt) == {
        "batchId": 1,
        "orgId": 1,
        "root": first.root,
        "firstSeq": 1,
        "lastSeq": 100,
        "count": 100,
    }
    assert world.fns.batch(1).call() == (first.root, 1, 1, 100, 100, receipt["blockNumber"])
    second = tree_of(101, 101)
    assert world.anchored(world.put(second, 101, 101))["batchId"] == 2
    assert world.fns.lastAnchoredSeq(1).call() == 101
    assert world.fns.lastBatchOf(1).call() == 2

    # Organisation 2's log is its own, from entry 1; batch ids are shared.
    receipt = world.put(tree_of(1, 7), 1, 7, world.auditor2)
    assert world.anchored(receipt)["batchId"] == 3
    assert world.anchored(receipt)["orgId"] == 2
    assert world.fns.lastAnchoredSeq(2).call() == 7
    assert world.fns.lastAnchoredSeq(1).call() == 101
    assert world.fns.batchCount().call() == 3


def test_a_batch_must_continue_the_organisations_log(world):
    tree = tree_of(1, 10)
    with world.reverts("NonContiguousBatch", 1, 1, 2):
        world.put(tree, 2, 10)
    world.put(tree, 1, 10)
    with world.reverts("NonContiguousBatch", 1, 11, 1):
        world.put(tree, 1, 10)  # no replacing an anchored batch
    with world.reverts("NonContiguousBatch", 1, 11, 12):
        world.put(tree, 12, 20)
    world.put(tree_of(11, 11), 11, 11)


def test_ranges_and_roots_are_checked(world):
    fns, root = world.fns, tree_of(1, 3).root
    with world.reverts("InvalidRoot"):
        world.send(fns.anchor(bytes(32), 1, 3, 3), world.auditor1)
    with world.reverts("InvalidRange", 0, 3, 4):
        world.send(fns.anchor(root, 0, 3, 4), world.auditor1)
    with world.reverts("InvalidRange", 3, 2, 0):
        world.send(fns.anchor(root, 3, 2, 0), world.auditor1)
    with world.reverts("InvalidRange", 1, 3, 2):
        world.send(fns.anchor(root, 1, 3, 2), world.auditor1)
    with world.reverts("InvalidRange", 1, 2**64 - 1, 0):
        world.send(fns.anchor(root, 1, 2**64 - 1, 0), world.auditor1)


@pytest.mark.parametrize("who", ["steward1", "admin1", "outsider"])
def test_only_auditors_anchor(world, who):
    account = world.accounts[8] if who == "outsider" else getattr(world, who)
    with world.reverts("AccessControlUnauthorizedAccount", account, world.auditor_role):
        world.put(tree_of(1, 2), 1, 2, account)


def test_an_auditor_of_a_suspended_organisation_is_refused(world):
    consortium = world.consortium.functions
    receipt = world.chain.transact(consortium.proposeSuspendOrganization(2), world.admin1)
    proposal = world.chain.events(world.consortium, "ProposalCreated", receipt)[0]["proposalId"]
    world.chain.transact(consortium.approve(proposal), world.admin2)
    world.chain.transact(consortium.execute(proposal), world.admin1)
    with world.reverts("AccessControlUnauthorizedAccount", world.auditor2, world.auditor_role):
        world.put(tree_of(1, 2), 1, 2, world.auditor2)
    world.put(tree_of(1, 2), 1, 2)  # organisation 1 is unaffected


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13])
def test_every_python_proof_verifies_on_chain_and_nothing_else_does(world, size):
    tree = tree_of(1, size)
    world.put(tree, 1, size)
    fns = world.fns
    for seq, digest in (entry(s) for s in range(1, size + 1)):
        leaf = leaf_hash(seq, digest)
        proof = tree.proof(leaf)
        assert fns.leafOf(seq, digest).call() == leaf
        assert verify_proof(leaf, proof, tree.root)
        assert fns.verify(1, leaf, proof).call() is True
        assert fns.verifyEntry(1, seq, digest, proof).call() is True
        # The same hash at another position, or another hash at this one, is not in the batch.
        assert fns.verifyEntry(1, seq + 1, digest, proof).call() is False
        assert fns.verifyEntry(1, seq, keccak(digest), proof).call() is False
        assert fns.verify(1, keccak(leaf), proof).call() is False
        if proof:
            assert fns.verify(1, leaf, proof[:-1]).call() is False
    # A seq outside the batch's range never verifies, whatever the proof.
    outside_seq, outside_hash = entry(size + 1)
    first_proof = tree.proof(leaf_hash(*entry(1)))
    assert fns.verifyEntry(1, outside_seq, outside_hash, first_proof).call() is False
    assert fns.verify(1, leaf_hash(outside_seq, outside_hash), []).call() is False


def test_unknown_batches_are_refused(world):
    fns = world.fns
    with world.reverts("UnknownBatch", 0):
        fns.batch(0).call()
    with world.reverts("UnknownBatch", 1):
        fns.verify(1, bytes(32), []).call()
    with world.reverts("UnknownBatch", 5):
        fns.verifyEntry(5, 1, bytes(32), []).call()


def test_anchoring_costs_the_same_whatever_the_batch_size(world):
    """One transaction per batch, its gas independent of how many entries the root covers."""
    gas = {}
    first = 1
    for size in (1, 1_000, 65_536):
        last = first + size - 1
        tree = tree_of(first, min(last, first + 15))  # any root will do for the cost
        receipt = world.put(tree, first, last)
        gas[size] = receipt["gasUsed"]
        first = last + 1
    # The very first batch also creates the batch counter and the organisation's words; later
    # batches only update them.
    # Beyond that only the calldata differs (a few more non-zero bytes in larger numbers).
    assert abs(gas[1_000] - gas[65_536]) < 100
    assert 0 < gas[1] - gas[1_000] < 60_000
    assert gas[65_536] < 120_000
    print(f"\nAuditAnchor.anchor gas: first batch {gas[1]}, later batches {gas[65_536]}")


def test_an_org_admin_supersedes_a_bogus_batch_run_ahead_of_the_log(world):
    """A misbehaving AUDITOR anchors entries far ahead of the log; no honest batch continues it
    until the organisation's ORG_ADMIN supersedes the bogus batches, newest first."""
    honest = tree_of(1, 10)
    world.put(honest, 1, 10)
    bogus = tree_of(11, 11)
    world.send(world.fns.anchor(bogus.root, 11, 10**9, 10**9 - 10), world.auditor1)
    world.send(world.fns.anchor(bogus.root, 10**9 + 1, 10**9 + 1, 1), world.auditor1)
    with world.reverts("NonContiguousBatch", 1, 10**9 + 2, 11):
        world.put(tree_of(11, 20), 11, 20)

    admin1, admin2 = world.accounts[1], world.accounts[3]
    org_admin = keccak(text="ORG_ADMIN")
    with world.reverts("AccessControlUnauthorizedAccount", world.auditor1, org_admin):
        world.send(world.fns.supersedeBatch(3), world.auditor1)  # the auditor cannot undo
    with world.reverts("NotBatchOrganization", 3, 2):
        world.send(world.fns.supersedeBatch(3), admin2)  # nor another organisation's admin
    with world.reverts("NotLatestBatch", 2, 3):
        world.send(world.fns.supersedeBatch(2), admin1)  # newest first
    with world.reverts("UnknownBatch", 9):
        world.send(world.fns.supersedeBatch(9), admin1)

    assert world.fns.verify(2, bogus.root, []).call()
    receipt = world.send(world.fns.supersedeBatch(3), admin1)
    assert world.chain.events(world.anchor, "BatchSuperseded", receipt) == [
        {"batchId": 3, "orgId": 1, "admin": admin1, "lastAnchoredSeq": 10**9}
    ]
    world.send(world.fns.supersedeBatch(2), admin1)
    assert world.fns.lastAnchoredSeq(1).call() == 10
    assert world.fns.lastBatchOf(1).call() == 1
    assert world.fns.superseded(2).call()
    assert world.fns.superseded(3).call()
    assert not world.fns.superseded(1).call()
    with world.reverts("NotLatestBatch", 2, 1):
        world.send(world.fns.supersedeBatch(2), admin1)  # once only
    # A superseded batch proves nothing any more; the honest log continues.
    assert not world.fns.verify(2, bogus.root, []).call()  # a one-leaf tree: the root is the leaf
    assert world.anchored(world.put(tree_of(11, 20), 11, 20))["batchId"] == 4
    assert world.fns.lastBatchOf(1).call() == 4
