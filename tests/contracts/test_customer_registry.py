"""CustomerRegistry: pseudonymous customer ids, per-holder commitments, wallets, erasure.

The world of most tests: the default Consortium; organisation 1 ("founder", admin accounts[1])
with DATA_STEWARD accounts[2]; organisation 2 ("partner", admin accounts[3]) with DATA_STEWARD
accounts[4]; an AGENT of organisation 1, accounts[6]; and a CustomerRegistry bound to that
Consortium. It is built once per chain (`module_chain`) and every test's changes are undone
(`chain.isolated`). Wallets are fresh eth-account keys that never send a transaction: they only
sign EIP-712 typed data, exactly as `eth_signTypedData_v4` would.
"""

from __future__ import annotations

import pytest
import rlp
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.contracts.registry_world import (
    ACTIVE,
    ALREADY_HELD,
    BATCH_GAS,
    ERASED,
    FAR_FUTURE,
    INVALID,
    NONE,
    RECOVERY_DELAY,
    SKIPPED_ERASED,
    ZERO32,
    World,
    build_world,
    commit,
    wallet_key,
)
from tests.contracts.typed_data import ZERO_ADDRESS, cid


@pytest.fixture(scope="module")
def base_world(module_chain, add_organization, customer_registry_artifact) -> World:
    """The world, built once per chain; `world` undoes each test's changes to it."""
    return build_world(module_chain, add_organization, customer_registry_artifact)


# ------------------------------------------------------------------------------------------------
# Deployment
# ------------------------------------------------------------------------------------------------


def test_deployment_binds_the_consortium_and_the_eip712_domain(world):
    fns = world.fns
    w3 = world.chain.w3
    assert world.event_names(world.deploy_receipt) == []
    assert fns.consortium().call() == world.consortium.address
    assert bytes(fns.DATA_STEWARD().call()) == keccak(text="DATA_STEWARD")
    assert bytes(fns.DATA_STEWARD().call()) == world.roles["DATA_STEWARD"]
    assert fns.walletRecoveryDelay().call() == RECOVERY_DELAY
    assert bytes(fns.LINK_WALLET_TYPEHASH().call()) == keccak(
        text="LinkWallet(bytes32 customerId,address wallet,uint256 nonce,uint256 deadline)"
    )
    fields, name, version, chain_id, verifying, salt, extensions = fns.eip712Domain().call()
    assert (fields, name, version) == (b"\x0f", "CustomerRegistry", "1")
    assert (chain_id, verifying) == (w3.eth.chain_id, world.registry.address)
    assert (salt, extensions) == (ZERO32, [])
    signable = encode_typed_data(full_message=world.typed_data(cid(1), ZERO_ADDRESS, 0, 0))
    assert bytes(fns.DOMAIN_SEPARATOR().call()) == signable.header


def test_constructor_refuses_an_address_without_code(world, customer_registry_artifact):
    with world.reverts("InvalidConsortium", world.outsider):
        world.chain.deploy_artifact(customer_registry_artifact, world.outsider, RECOVERY_DELAY)
    with world.reverts("InvalidRecoveryDelay"):
        world.chain.deploy_artifact(customer_registry_artifact, world.consortium.address, 0)


# ------------------------------------------------------------------------------------------------
# Registration
# ------------------------------------------------------------------------------------------------


def test_register_creates_the_identity_with_the_caller_org_as_first_holder(world):
    fns = world.fns
    receipt = world.register("alice")
    at = world.timestamp(receipt)

    assert world.event_names(receipt) == ["CustomerRegistered"]
    assert world.events("CustomerRegistered", receipt) == [
        {"customerId": cid("alice"), "orgId": 1, "commitment": commit("alice")}
    ]
    assert fns.customer(cid("alice")).call() == [ACTIVE, at, ZERO_ADDRESS, 1]
    assert fns.holding(cid("alice"), 1).call() == (commit("alice"), 1, at, True)  # custodian
    assert fns.holding(cid("alice"), 2).call() == (ZERO32, 0, 0, False)
    assert fns.holdersOf(cid("alice")).call() == [1]
    assert fns.isHolder(cid("alice"), 1).call()
    assert not fns.isHolder(cid("alice"), 2).call()
    assert fns.exists(cid("alice")).call()
    assert fns.walletNonce(cid("alice")).call() == 0

    assert not fns.exists(cid("bob")).call()
    assert fns.customer(cid("bob")).call() == [NONE, 0, ZERO_ADDRESS, 0]
    assert fns.holdersOf(cid("bob")).call() == []


def test_a_second_org_joins_as_a_holder_with_its_own_commitment(world):
    fns = world.fns
    first = world.register("alice")
    call = fns.register(cid("alice"), commit("alice at partner"))
    receipt = world.send(call, world.steward2)

    assert world.event_names(receipt) == ["HolderJoined"]
    assert world.events("HolderJoined", receipt) == [
        {"customerId": cid("alice"), "orgId": 2, "commitment": commit("alice at partner")}
    ]
    assert fns.customer(cid("alice")).call() == [ACTIVE, world.timestamp(first), ZERO_ADDRESS, 2]
    assert fns.holdersOf(cid("alice")).call() == [1, 2]
    assert fns.holding(cid("alice"), 1).call() == (
        commit("alice"),
        1,
        world.timestamp(first),
        True,
    )
    assert fns.holding(cid("alice"), 2).call() == (  # joined later: not the custodian
        commit("alice at partner"),
        1,
        world.timestamp(receipt),
        False,
    )


def test_a_duplicate_by_the_same_org_names_the_existing_id(world):
    world.register("alice")
    world.register("alice", world.steward2)
    for steward in (world.steward1, world.steward2):
        with world.reverts("CustomerAlreadyRegistered", cid("alice")):
            world.send(world.fns.register(cid("alice"), commit("other")), steward)


@pytest.mark.parametrize("who", ["outsider", "agent1", "admin1", "deployer"])
def test_only_data_stewards_write(world, who):
    account = world.accounts[0] if who == "deployer" else getattr(world, who)
    steward = bytes(world.fns.DATA_STEWARD().call())
    world.register("alice")
    fns = world.fns
    signature = world.sign_link(cid("alice"), wallet_key("w"))
    calls = [
        fns.register(cid("bob"), commit("bob")),
        fns.registerBatch([cid("bob")], [commit("bob")]),
        fns.updateCommitment(cid("alice"), commit("alice", 2), 1),
        fns.linkWallet(cid("alice"), wallet_key("w").address, FAR_FUTURE, signature),
        fns.startWalletRecovery(cid("alice"), wallet_key("w").address, FAR_FUTURE, signature),
        fns.erase(cid("alice")),
    ]
    for call in calls:
        with world.reverts("AccessControlUnauthorizedAccount", account, steward):
            world.send(call, account)


def test_a_steward_of_a_suspended_org_is_refused_until_it_is_reactivated(world):
    consortium = world.consortium.functions
    steward = bytes(world.fns.DATA_STEWARD().call())
    receipt = world.chain.transact(consortium.proposeSuspendOrganization(2), world.admin1)
    proposal = world.chain.events(world.consortium, "ProposalCreated", receipt)[0]["proposalId"]
    world.chain.transact(consortium.approve(proposal), world.admin2)
    world.chain.transact(consortium.execute(proposal), world.admin1)

    with world.reverts("AccessControlUnauthorizedAccount", world.steward2, steward):
        world.register("alice", world.steward2)
    world.register("alice")  # organisation 1 is unaffected

    receipt = world.chain.transact(consortium.proposeReactivateOrganization(2), world.admin1)
    proposal = world.chain.events(world.consortium, "ProposalCreated", receipt)[0]["proposalId"]
    world.chain.transact(consortium.execute(proposal), world.admin1)
    assert world.event_names(world.register("alice", world.steward2)) == ["HolderJoined"]


def test_zero_ids_and_commitments_are_refused(world):
    fns = world.fns
    world.register("alice")
    key = wallet_key("w")
    cases = [
        (fns.register(ZERO32, commit("x")), ("InvalidCustomerId",)),
        (fns.register(cid("bob"), ZERO32), ("InvalidCommitment",)),
        (fns.register(ZERO32, ZERO32), ("InvalidCustomerId",)),
        (fns.updateCommitment(ZERO32, commit("x"), 1), ("InvalidCustomerId",)),
        (fns.updateCommitment(cid("alice"), ZERO32, 1), ("InvalidCommitment",)),
        (fns.linkWallet(ZERO32, key.address, FAR_FUTURE, b""), ("InvalidCustomerId",)),
        (fns.erase(ZERO32), ("InvalidCustomerId",)),
    ]
    for call, error in cases:
        with world.reverts(*error):
            world.send(call, world.steward1)
    assert not fns.exists(ZERO32).call()
    assert not fns.exists(cid("bob")).call()


# ------------------------------------------------------------------------------------------------
# Batches
# ------------------------------------------------------------------------------------------------


def test_batch_registers_and_skips_without_reverting(world):
    fns = world.fns
    world.register("held")
    world.register("gone", world.steward2)
    world.send(fns.erase(cid("gone")), world.steward2)
    world.register("partner only", world.steward2)

    ids = [
        cid("a"),
        cid("held"),
        cid("b"),
        cid("a"),  # repeat inside the batch
        ZERO32,
        cid("gone"),
        cid("c"),
        cid("partner only"),
    ]
    commitments = [commit(i) for i in range(len(ids))]
    commitments[6] = ZERO32  # cid("c") with a zero commitment
    call = fns.registerBatch(ids, commitments)
    assert call.call({"from": world.steward1}) == 3
    receipt = world.send(call, world.steward1)

    assert world.event_names(receipt) == [
        "CustomerRegistered",
        "RegistrationSkipped",
        "CustomerRegistered",
        "RegistrationSkipped",
        "RegistrationSkipped",
        "RegistrationSkipped",
        "RegistrationSkipped",
        "HolderJoined",
    ]
    assert world.events("CustomerRegistered", receipt) == [
        {"customerId": cid("a"), "orgId": 1, "commitment": commit(0)},
        {"customerId": cid("b"), "orgId": 1, "commitment": commit(2)},
    ]
    assert world.events("RegistrationSkipped", receipt) == [
        {"customerId": cid("held"), "reason": ALREADY_HELD},
        {"customerId": cid("a"), "reason": ALREADY_HELD},
        {"customerId": ZERO32, "reason": INVALID},
        {"customerId": cid("gone"), "reason": SKIPPED_ERASED},
        {"customerId": cid("c"), "reason": INVALID},
    ]
    assert world.events("HolderJoined", receipt) == [
        {"customerId": cid("partner only"), "orgId": 1, "commitment": commit(7)}
    ]
    assert fns.holding(cid("a"), 1).call()[:2] == (commit(0), 1)  # the first occurrence won
    assert fns.holding(cid("held"), 1).call()[:2] == (commit("held"), 1)  # untouched
    assert not fns.exists(cid("c")).call()
    assert fns.customer(cid("gone")).call()[0] == ERASED
    assert fns.holdersOf(cid("partner only")).call() == [2, 1]


def test_a_batch_sent_again_changes_nothing(world):
    fns = world.fns
    ids = [cid(i) for i in range(5)]
    commitments = [commit(i) for i in range(5)]
    first = world.send(fns.registerBatch(ids, commitments), world.steward1)
    assert world.event_names(first) == ["CustomerRegistered"] * 5

    # Resumed import: the first half again plus the rest.
    more = [cid(i) for i in range(3, 8)]
    call = fns.registerBatch(more, [commit(i) for i in range(3, 8)])
    assert call.call({"from": world.steward1}) == 3
    again = world.send(call, world.steward1)
    assert world.events("RegistrationSkipped", again) == [
        {"customerId": cid(3), "reason": ALREADY_HELD},
        {"customerId": cid(4), "reason": ALREADY_HELD},
    ]
    assert [e["customerId"] for e in world.events("CustomerRegistered", again)] == more[2:]

    # The partner imports the same people: it joins each of them.
    joined = world.send(fns.registerBatch(ids, commitments), world.steward2)
    assert world.event_names(joined) == ["HolderJoined"] * 5
    assert all(fns.holdersOf(i).call() == [1, 2] for i in ids)


def test_batch_length_mismatch_is_refused(world):
    with world.reverts("LengthMismatch"):
        world.send(world.fns.registerBatch([cid(1), cid(2)], [commit(1)]), world.steward1)
    receipt = world.send(world.fns.registerBatch([], []), world.steward1)
    assert world.event_names(receipt) == []


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    batches=st.lists(
        st.lists(st.integers(min_value=0, max_value=12), max_size=12), min_size=1, max_size=3
    )
)
def test_random_batches_register_each_distinct_id_once(world, batches):
    """Ids 1..12 stand for customers, 0 for an invalid (zero) id; batches overlap freely."""
    fns = world.fns
    with world.chain.isolated():
        registered: list[bytes] = []
        skipped = 0
        for batch in batches:
            ids = [cid(n) if n else ZERO32 for n in batch]
            receipt = world.send(
                fns.registerBatch(ids, [commit(n) for n in batch]), world.steward1, gas=BATCH_GAS
            )
            registered += [e["customerId"] for e in world.events("CustomerRegistered", receipt)]
            skipped += len(world.events("RegistrationSkipped", receipt))
        distinct = {cid(n) for batch in batches for n in batch if n}
        assert sorted(registered) == sorted(distinct)  # each once, none missing
        assert skipped == sum(len(b) for b in batches) - len(distinct)
        for n in range(1, 13):
            expected = [1] if cid(n) in distinct else []
            assert fns.holdersOf(cid(n)).call() == expected


# ------------------------------------------------------------------------------------------------
# Commitment updates
# ------------------------------------------------------------------------------------------------


def test_update_commitment_moves_the_holder_to_the_next_version(world):
    fns = world.fns
    world.register("alice")
    joined = world.register("alice", world.steward2)

    receipt = world.send(fns.updateCommitment(cid("alice"), commit("alice", 2), 1), world.steward1)
    assert world.event_names(receipt) == ["CommitmentUpdated"]
    assert world.events("CommitmentUpdated", receipt) == [
        {"customerId": cid("alice"), "orgId": 1, "version": 2, "commitment": commit("alice", 2)}
    ]
    # An update keeps the custodian flag.
    assert fns.holding(cid("alice"), 1).call() == (
        commit("alice", 2),
        2,
        world.timestamp(receipt),
        True,
    )
    # The other holder's copy is its own business.
    assert fns.holding(cid("alice"), 2).call() == (
        commit("alice"),
        1,
        world.timestamp(joined),
        False,
    )

    receipt = world.send(fns.updateCommitment(cid("alice"), commit("alice", 3), 2), world.steward1)
    assert world.events("CommitmentUpdated", receipt)[0]["version"] == 3


def test_update_commitment_refusals(world):
    fns = world.fns
    world.register("alice")
    world.send(fns.updateCommitment(cid("alice"), commit("alice", 2), 1), world.steward1)
    world.register("gone")
    world.send(fns.erase(cid("gone")), world.steward1)

    with world.reverts("VersionMismatch", cid("alice"), 2, 1):  # a concurrent update won
        world.send(fns.updateCommitment(cid("alice"), commit("alice", 3), 1), world.steward1)
    with world.reverts("VersionMismatch", cid("alice"), 2, 3):
        world.send(fns.updateCommitment(cid("alice"), commit("alice", 3), 3), world.steward1)
    with world.reverts("NotHolder", cid("alice"), 2):
        world.send(fns.updateCommitment(cid("alice"), commit("x"), 1), world.steward2)
    with world.reverts("UnknownCustomer", cid("nobody")):
        world.send(fns.updateCommitment(cid("nobody"), commit("x"), 0), world.steward1)
    with world.reverts("CustomerIsErased", cid("gone")):
        world.send(fns.updateCommitment(cid("gone"), commit("x"), 1), world.steward1)
    assert fns.holding(cid("alice"), 1).call()[:2] == (commit("alice", 2), 2)


# ------------------------------------------------------------------------------------------------
# Wallets
# ------------------------------------------------------------------------------------------------


def test_link_wallet_with_an_eip712_signature_of_the_wallet(world):
    fns = world.fns
    world.register("alice")
    key = wallet_key("alice")
    deadline = world.chain.latest_timestamp() + 600
    typed = world.typed_data(cid("alice"), key.address, 0, deadline)
    signature = Account.sign_typed_data(key.key, full_message=typed).signature

    receipt = world.send(
        fns.linkWallet(cid("alice"), key.address, deadline, signature), world.steward1
    )
    assert world.event_names(receipt) == ["WalletLinked"]
    assert world.events("WalletLinked", receipt) == [
        {
            "customerId": cid("alice"),
            "oldWallet": ZERO_ADDRESS,
            "newWallet": key.address,
            "nonce": 0,
        }
    ]
    assert fns.customer(cid("alice")).call()[2] == key.address
    assert fns.customerOfWallet(key.address).call() == cid("alice")
    assert fns.walletNonce(cid("alice")).call() == 1


def test_rotating_the_wallet_replaces_the_old_one(world):
    fns = world.fns
    world.register("alice")
    world.register("alice", world.steward2)
    old, new = wallet_key("old"), wallet_key("new")
    world.link(cid("alice"), old)

    receipt = world.rotate(cid("alice"), old, new)  # both wallets sign; anyone may submit
    assert world.events("WalletLinked", receipt) == [
        {"customerId": cid("alice"), "oldWallet": old.address, "newWallet": new.address, "nonce": 1}
    ]
    assert fns.customer(cid("alice")).call()[2] == new.address
    assert fns.customerOfWallet(old.address).call() == ZERO32
    assert fns.customerOfWallet(new.address).call() == cid("alice")
    assert fns.walletNonce(cid("alice")).call() == 2

    # The released wallet can go to another customer.
    world.register("bob")
    world.link(cid("bob"), old)
    assert fns.customerOfWallet(old.address).call() == cid("bob")


def test_is_active_wallet_follows_links_rotations_and_erasure(world):
    # One storage read answers it: a wallet is linked only to an active customer, and unlinked
    # when rotated away or when its customer is erased.
    fns = world.fns
    old, new, stranger = wallet_key("old"), wallet_key("new"), wallet_key("stranger")
    assert fns.isActiveWallet(ZERO_ADDRESS).call() is False
    world.register("alice")
    world.register("alice", world.steward2)
    assert fns.isActiveWallet(old.address).call() is False
    world.link(cid("alice"), old)
    assert fns.isActiveWallet(old.address).call() is True
    world.rotate(cid("alice"), old, new)
    assert (fns.isActiveWallet(old.address).call(), fns.isActiveWallet(new.address).call()) == (
        False,
        True,
    )
    world.send(fns.erase(cid("alice")), world.steward1)  # one holder left: still active
    assert fns.isActiveWallet(new.address).call() is True
    world.send(fns.erase(cid("alice")), world.steward2)
    assert fns.isActiveWallet(new.address).call() is False
    assert fns.isActiveWallet(stranger.address).call() is False


def test_link_wallet_refusals(world):
    fns = world.fns
    world.register("alice")
    world.register("bob")
    key, other = wallet_key("alice"), wallet_key("other")
    now = world.chain.latest_timestamp()

    def attempt(
        signature,
        *,
        wallet=key.address,
        deadline=FAR_FUTURE,
        customer=cid("alice"),
        sender=world.steward1,
    ):
        return world.send(fns.linkWallet(customer, wallet, deadline, signature), sender)

    expired = now - 1
    with world.reverts("ExpiredSignature", expired):
        attempt(world.sign_link(cid("alice"), key, deadline=expired), deadline=expired)
    with world.reverts("InvalidWalletSignature", cid("alice"), key.address):  # wrong signer
        attempt(world.sign_link(cid("alice"), other, wallet=key.address))
    with world.reverts("InvalidWalletSignature", cid("alice"), key.address):  # another customer
        attempt(world.sign_link(cid("bob"), key))
    with world.reverts("InvalidWalletSignature", cid("alice"), key.address):  # another deadline
        attempt(world.sign_link(cid("alice"), key, deadline=FAR_FUTURE - 1))
    with world.reverts("InvalidWalletSignature", cid("alice"), key.address):  # a future nonce
        attempt(world.sign_link(cid("alice"), key, nonce=1))
    with world.reverts("InvalidWalletSignature", cid("alice"), key.address):  # another contract
        attempt(world.sign_link(cid("alice"), key, verifying_contract=world.consortium.address))
    with world.reverts("InvalidWalletSignature", cid("alice"), key.address):  # malformed
        attempt(b"\x01" * 64)
    with world.reverts("InvalidWallet"):
        attempt(world.sign_link(cid("alice"), key), wallet=ZERO_ADDRESS)
    with world.reverts("NotHolder", cid("alice"), 2):
        attempt(world.sign_link(cid("alice"), key), sender=world.steward2)
    with world.reverts("UnknownCustomer", cid("nobody")):
        attempt(world.sign_link(cid("nobody"), key), customer=cid("nobody"))
    assert fns.walletNonce(cid("alice")).call() == 0

    signature = world.sign_link(cid("alice"), key)
    attempt(signature)
    with world.reverts("WalletAlreadyLinked", cid("alice"), key.address):  # replayed
        attempt(signature)
    with world.reverts("WalletAlreadyLinked", cid("alice"), key.address):  # a takeover
        attempt(world.sign_link(cid("alice"), other), wallet=other.address)
    with world.reverts("WalletInUse", key.address, cid("alice")):
        attempt(world.sign_link(cid("bob"), key), customer=cid("bob"))
    assert fns.customer(cid("bob")).call()[2] == ZERO_ADDRESS
    assert fns.walletNonce(cid("alice")).call() == 1


def _erc1271_wallet_code(accepted_digest: bytes) -> bytes:
    """Init code of a contract wallet whose isValidSignature(bytes32,bytes) returns the ERC-1271
    magic value for `accepted_digest` only (and 0 for anything else)."""
    runtime = (
        bytes.fromhex("600435")  # CALLDATALOAD(4): the digest argument
        + b"\x7f"
        + accepted_digest  # PUSH32 accepted
        + bytes.fromhex("14603257")  # EQ, JUMPI to 0x32
        + bytes.fromhex("600060005260206000f3")  # return bytes32(0)
        + bytes.fromhex("5b631626ba7e60e01b60005260206000f3")  # return the magic value
    )
    assert runtime[0x32] == 0x5B
    init = bytes([0x60, len(runtime), 0x80, 0x60, 0x0B, 0x60, 0x00, 0x39, 0x60, 0x00, 0xF3])
    return init + runtime


def test_a_contract_wallet_links_through_erc1271(world):
    fns = world.fns
    w3 = world.chain.w3
    world.register("alice")
    deployer = world.accounts[9]
    nonce = w3.eth.get_transaction_count(deployer)
    wallet = to_checksum_address(keccak(rlp.encode([bytes.fromhex(deployer[2:]), nonce]))[12:])
    digest = encode_typed_data(full_message=world.typed_data(cid("alice"), wallet, 0, FAR_FUTURE))
    accepted = keccak(b"\x19\x01" + digest.header + digest.body)
    tx_hash = w3.eth.send_transaction(
        {"from": deployer, "data": _erc1271_wallet_code(accepted), "gas": 200_000}
    )
    assert w3.eth.wait_for_transaction_receipt(tx_hash)["contractAddress"] == wallet

    with world.reverts("InvalidWalletSignature", cid("alice"), wallet):  # digest not approved
        world.send(fns.linkWallet(cid("alice"), wallet, FAR_FUTURE - 1, b""), world.steward1)
    receipt = world.send(fns.linkWallet(cid("alice"), wallet, FAR_FUTURE, b""), world.steward1)
    assert world.events("WalletLinked", receipt)[0]["newWallet"] == wallet
    assert fns.customerOfWallet(wallet).call() == cid("alice")


# ------------------------------------------------------------------------------------------------
# Erasure
# ------------------------------------------------------------------------------------------------


def test_erasure_by_one_of_two_holders_keeps_the_identity(world):
    fns = world.fns
    registered = world.register("alice")
    world.register("alice", world.steward2)
    key = wallet_key("alice")
    world.link(cid("alice"), key)

    receipt = world.send(fns.erase(cid("alice")), world.steward1)
    assert world.event_names(receipt) == ["HoldingErased"]
    assert world.events("HoldingErased", receipt) == [{"customerId": cid("alice"), "orgId": 1}]
    assert fns.customer(cid("alice")).call() == [
        ACTIVE,
        world.timestamp(registered),
        key.address,
        1,
    ]
    assert fns.holdersOf(cid("alice")).call() == [2]
    assert fns.holding(cid("alice"), 1).call() == (ZERO32, 0, 0, False)
    assert fns.holding(cid("alice"), 2).call()[:2] == (commit("alice"), 1)
    with world.reverts("NotHolder", cid("alice"), 1):
        world.send(fns.erase(cid("alice")), world.steward1)
    with world.reverts("NotHolder", cid("alice"), 1):
        world.send(fns.updateCommitment(cid("alice"), commit("x"), 1), world.steward1)

    # The organisation may hold the customer again later, starting over at version 1.
    assert world.event_names(world.register("alice")) == ["HolderJoined"]
    assert fns.holding(cid("alice"), 1).call()[:2] == (commit("alice"), 1)


def test_erasure_by_the_last_holder_retires_the_id_for_good(world):
    fns = world.fns
    registered = world.register("alice")
    world.register("alice", world.steward2)
    key = wallet_key("alice")
    world.link(cid("alice"), key)
    world.send(fns.erase(cid("alice")), world.steward2)

    receipt = world.send(fns.erase(cid("alice")), world.steward1)
    assert world.event_names(receipt) == ["HoldingErased", "WalletUnlinked", "CustomerErased"]
    assert world.events("HoldingErased", receipt) == [{"customerId": cid("alice"), "orgId": 1}]
    assert world.events("WalletUnlinked", receipt) == [
        {"customerId": cid("alice"), "wallet": key.address}
    ]
    assert world.events("CustomerErased", receipt) == [{"customerId": cid("alice")}]
    assert fns.customer(cid("alice")).call() == [
        ERASED,
        world.timestamp(registered),
        ZERO_ADDRESS,
        0,
    ]
    assert fns.holdersOf(cid("alice")).call() == []
    assert fns.holding(cid("alice"), 1).call() == (ZERO32, 0, 0, False)
    assert fns.customerOfWallet(key.address).call() == ZERO32
    assert fns.exists(cid("alice")).call()

    for steward in (world.steward1, world.steward2):
        with world.reverts("CustomerIsErased", cid("alice")):
            world.send(fns.register(cid("alice"), commit("again")), steward)
        with world.reverts("CustomerIsErased", cid("alice")):
            world.send(fns.erase(cid("alice")), steward)
    with world.reverts("CustomerIsErased", cid("alice")):
        world.send(
            fns.linkWallet(
                cid("alice"), key.address, FAR_FUTURE, world.sign_link(cid("alice"), key)
            ),
            world.steward1,
        )

    # The gateway derives a fresh id for the same person; the wallet is free for it.
    world.register("alice, again")
    world.link(cid("alice, again"), key)
    assert fns.customerOfWallet(key.address).call() == cid("alice, again")


def test_erasure_without_a_wallet_and_refusals(world):
    fns = world.fns
    world.register("alice")
    with world.reverts("NotHolder", cid("alice"), 2):
        world.send(fns.erase(cid("alice")), world.steward2)
    with world.reverts("UnknownCustomer", cid("nobody")):
        world.send(fns.erase(cid("nobody")), world.steward1)
    receipt = world.send(fns.erase(cid("alice")), world.steward1)
    assert world.event_names(receipt) == ["HoldingErased", "CustomerErased"]


def test_holders_beyond_one_storage_word_are_kept_and_removed_correctly(
    world,
):
    """Six holders span two packed words; erasing from the middle, the ends and the second word
    keeps the others intact."""
    fns = world.fns
    consortium = world.consortium.functions
    stewards = {1: world.steward1, 2: world.steward2}
    accounts = world.accounts
    for admin in (accounts[5], accounts[7], accounts[8], accounts[9]):
        org_id = world.add_org(f"org-{admin[-4:]}", admin)
        world.chain.grant(consortium, world.roles["DATA_STEWARD"], admin, admin)
        stewards[org_id] = admin
    for org_id, steward in stewards.items():
        world.send(fns.register(cid("alice"), commit(f"alice@{org_id}")), steward)
    assert fns.holdersOf(cid("alice")).call() == [1, 2, 3, 4, 5, 6]

    remaining = [1, 2, 3, 4, 5, 6]
    for org_id in (2, 6, 1, 5, 3):
        world.send(fns.erase(cid("alice")), stewards[org_id])
        remaining.remove(org_id)
        holders = fns.holdersOf(cid("alice")).call()
        assert sorted(holders) == remaining
        assert fns.customer(cid("alice")).call()[3] == len(remaining)
        for other in remaining:
            assert fns.holding(cid("alice"), other).call()[:2] == (commit(f"alice@{other}"), 1)
    receipt = world.send(fns.erase(cid("alice")), stewards[4])
    assert world.event_names(receipt) == ["HoldingErased", "CustomerErased"]


# ------------------------------------------------------------------------------------------------
# Gas
# ------------------------------------------------------------------------------------------------


def test_gas_stays_within_budget(world):
    """Budgets with some headroom; the numbers themselves are reported by `-s` output."""
    fns = world.fns
    register = world.register("alice")["gasUsed"]
    join = world.register("alice", world.steward2)["gasUsed"]
    update = world.send(fns.updateCommitment(cid("alice"), commit("alice", 2), 1), world.steward1)
    link = world.link(cid("alice"), wallet_key("a"))["gasUsed"]
    rotate = world.rotate(cid("alice"), wallet_key("a"), wallet_key("b"))["gasUsed"]
    ids = [cid(f"batch {i}") for i in range(100)]
    batch = world.send(
        fns.registerBatch(ids, [commit(i) for i in range(100)]), world.steward1, gas=BATCH_GAS
    )["gasUsed"]
    rerun = world.send(
        fns.registerBatch(ids, [commit(i) for i in range(100)]), world.steward1, gas=BATCH_GAS
    )["gasUsed"]
    erase = world.send(fns.erase(cid("alice")), world.steward2)["gasUsed"]
    print(
        f"\ngas: register {register}, join {join}, updateCommitment {update['gasUsed']}, "
        f"linkWallet {link}, rotate {rotate}, registerBatch(100) {batch} "
        f"({batch // 100}/item), rerun {rerun} ({rerun // 100}/item), erase {erase}"
    )
    assert register < 140_000
    assert join < 120_000
    assert update["gasUsed"] < 55_000
    assert link < 110_000
    assert rotate < 110_000
    assert batch / 100 < 100_000
    assert rerun / 100 < 10_000
