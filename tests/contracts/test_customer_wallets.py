"""CustomerRegistry wallets: the wallet is the customer's.

First link only by the custodian (the organisation that registered the id first), rotation only
with the current wallet's signature (and the new one's), recovery of a lost wallet only by the
custodian's steward and only after the delay, cancellable by the current wallet. Every refusal
is checked by its custom error; the world is `tests/contracts/registry_world.py` (organisation 1
registers the customers; organisation 2 joins them later, as any member could).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.contracts.registry_world import (
    FAR_FUTURE,
    RECOVERY_DELAY,
    World,
    build_world,
    wallet_key,
)
from tests.contracts.typed_data import ZERO_ADDRESS, cid

ALICE = cid("alice")


@pytest.fixture(scope="module")
def base_world(module_chain, add_organization, customer_registry_artifact) -> World:
    return build_world(module_chain, add_organization, customer_registry_artifact)


@pytest.fixture
def alice(world: World) -> Any:
    """Alice, registered by organisation 1, joined by organisation 2, with her wallet linked."""
    world.register("alice")
    world.register("alice", world.steward2)
    key = wallet_key("alice")
    world.link(ALICE, key)
    return key


def send_from_wallet(world: World, key: Any, call: Any) -> Any:
    """The wallet sends its own transaction (funded first: it has no ether of its own)."""
    w3 = world.chain.w3
    funding = w3.eth.send_transaction(
        {"from": world.accounts[0], "to": key.address, "value": 10**17}
    )
    w3.eth.wait_for_transaction_receipt(funding)
    tx = call.build_transaction(
        {
            "from": key.address,
            "nonce": w3.eth.get_transaction_count(key.address),
            "gas": 300_000,
            "chainId": w3.eth.chain_id,
        }
    )
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(key.sign_transaction(tx).raw_transaction)
    )
    if receipt["status"] != 1:
        call.call({"from": key.address}, block_identifier=receipt["blockNumber"] - 1)
        raise AssertionError(f"transaction failed without revert data: {receipt}")
    return receipt


def start_recovery(world: World, new: Any, sender: str | None = None) -> Any:
    signature = world.sign_link(ALICE, new)
    call = world.fns.startWalletRecovery(ALICE, new.address, FAR_FUTURE, signature)
    return world.send(call, sender or world.steward1)


# ------------------------------------------------------------------------------------------------
# First link: the custodian only
# ------------------------------------------------------------------------------------------------


def test_a_later_holder_cannot_make_the_first_link(world):
    world.register("alice")
    world.register("alice", world.steward2)  # HolderJoined: organisation 2 holds alice too
    mallory = wallet_key("mallory")
    with world.reverts("NotWalletCustodian", ALICE, 2):
        world.link(ALICE, mallory, world.steward2)
    assert world.fns.customer(ALICE).call()[2] == ZERO_ADDRESS
    world.link(ALICE, wallet_key("alice"))  # the custodian can
    assert world.fns.customer(ALICE).call()[2] == wallet_key("alice").address


def test_a_linked_wallet_is_never_replaced_by_a_link(world, alice):
    mallory = wallet_key("mallory")
    with world.reverts("WalletAlreadyLinked", ALICE, alice.address):  # not even the custodian
        world.link(ALICE, mallory, world.steward1)
    with world.reverts("NotWalletCustodian", ALICE, 2):
        world.link(ALICE, mallory, world.steward2)
    assert world.fns.customer(ALICE).call()[2] == alice.address


def test_after_the_custodian_erased_its_holding_no_organisation_is_custodian(world):
    world.register("alice")
    world.register("alice", world.steward2)
    world.send(world.fns.erase(ALICE), world.steward1)
    world.register("alice")  # organisation 1 comes back: it joins, it is not custodian again
    for org_id, steward in ((1, world.steward1), (2, world.steward2)):
        with world.reverts("NotWalletCustodian", ALICE, org_id):
            world.link(ALICE, wallet_key("w"), steward)


# ------------------------------------------------------------------------------------------------
# Rotation: the current wallet decides
# ------------------------------------------------------------------------------------------------


def test_rotation_signed_by_both_wallets_is_accepted_from_anyone(world, alice):
    new = wallet_key("new")
    receipt = world.rotate(ALICE, alice, new, world.outsider)
    assert world.event_names(receipt) == ["WalletLinked"]
    assert world.events("WalletLinked", receipt) == [
        {"customerId": ALICE, "oldWallet": alice.address, "newWallet": new.address, "nonce": 1}
    ]
    assert world.fns.customerOfWallet(alice.address).call() == bytes(32)
    assert world.fns.walletNonce(ALICE).call() == 2


def test_rotation_refusals(world, alice):
    fns = world.fns
    new, mallory = wallet_key("new"), wallet_key("mallory")
    now = world.chain.latest_timestamp()

    def attempt(current_sig, new_sig, *, wallet=new.address, deadline=FAR_FUTURE, who=ALICE):
        call = fns.rotateWallet(who, wallet, deadline, current_sig, new_sig)
        return world.send(call, world.outsider)

    good_new = world.sign_link(ALICE, new)
    good_current = world.sign_rotate(ALICE, alice, new.address)
    # A steward (or anyone) without the current wallet's key: its own key signs "as" the wallet.
    with world.reverts("InvalidWalletSignature", ALICE, alice.address):
        attempt(
            world.sign_rotate(ALICE, mallory, new.address, current_wallet=alice.address), good_new
        )
    # The current wallet agreed to another new wallet.
    with world.reverts("InvalidWalletSignature", ALICE, alice.address):
        attempt(world.sign_rotate(ALICE, alice, mallory.address), good_new)
    # The new wallet did not sign (possession not proven).
    with world.reverts("InvalidWalletSignature", ALICE, new.address):
        attempt(good_current, world.sign_link(ALICE, mallory, wallet=new.address))
    with world.reverts("InvalidWalletSignature", ALICE, alice.address):  # a future nonce
        attempt(world.sign_rotate(ALICE, alice, new.address, nonce=2), good_new)
    expired = now - 1
    with world.reverts("ExpiredSignature", expired):
        attempt(good_current, good_new, deadline=expired)
    with world.reverts("InvalidWallet"):
        attempt(good_current, good_new, wallet=ZERO_ADDRESS)
    with world.reverts("UnknownCustomer", cid("nobody")):
        attempt(good_current, good_new, who=cid("nobody"))
    world.register("bob")
    with world.reverts("NoWalletLinked", cid("bob")):
        attempt(good_current, good_new, who=cid("bob"))
    world.link(cid("bob"), mallory)
    with world.reverts("WalletInUse", mallory.address, cid("bob")):
        attempt(
            world.sign_rotate(ALICE, alice, mallory.address),
            world.sign_link(ALICE, mallory),
            wallet=mallory.address,
        )
    assert fns.customer(ALICE).call()[2] == alice.address

    attempt(good_current, good_new)
    with world.reverts("InvalidWalletSignature", ALICE, new.address):  # replayed: nonce used
        attempt(good_current, good_new)


# ------------------------------------------------------------------------------------------------
# Recovery: the custodian, after the delay, unless the wallet cancels
# ------------------------------------------------------------------------------------------------


def test_recovery_completes_only_after_the_delay(world, alice):
    fns = world.fns
    new = wallet_key("recovered")
    receipt = start_recovery(world, new)
    ready_at = world.timestamp(receipt) + RECOVERY_DELAY
    assert world.event_names(receipt) == ["WalletRecoveryStarted"]
    assert world.events("WalletRecoveryStarted", receipt) == [
        {
            "customerId": ALICE,
            "orgId": 1,
            "currentWallet": alice.address,
            "newWallet": new.address,
            "readyAt": ready_at,
            "nonce": 1,
        }
    ]
    assert fns.walletRecovery(ALICE).call() == (new.address, ready_at)
    assert fns.customer(ALICE).call()[2] == alice.address  # nothing changes yet
    with world.reverts("RecoveryNotReady", ALICE, ready_at):
        world.send(fns.completeWalletRecovery(ALICE), world.outsider)
    world.chain.advance_time(RECOVERY_DELAY // 2)
    with world.reverts("RecoveryNotReady", ALICE, ready_at):
        world.send(fns.completeWalletRecovery(ALICE), world.outsider)

    world.chain.advance_time(RECOVERY_DELAY // 2 + 1)
    receipt = world.send(fns.completeWalletRecovery(ALICE), world.outsider)
    assert world.event_names(receipt) == ["WalletLinked", "WalletRecoveryCompleted"]
    assert world.events("WalletRecoveryCompleted", receipt) == [
        {"customerId": ALICE, "oldWallet": alice.address, "newWallet": new.address}
    ]
    assert fns.customer(ALICE).call()[2] == new.address
    assert fns.customerOfWallet(alice.address).call() == bytes(32)
    assert fns.walletRecovery(ALICE).call() == (ZERO_ADDRESS, 0)
    with world.reverts("NoRecoveryPending", ALICE):
        world.send(fns.completeWalletRecovery(ALICE), world.outsider)


def test_recovery_start_refusals(world, alice):
    new = wallet_key("recovered")
    with world.reverts("NotWalletCustodian", ALICE, 2):  # a later holder
        start_recovery(world, new, world.steward2)
    steward_role = world.roles["DATA_STEWARD"]
    with world.reverts("AccessControlUnauthorizedAccount", world.agent1, steward_role):
        start_recovery(world, new, world.agent1)
    with world.reverts("InvalidWalletSignature", ALICE, new.address):  # the new wallet must sign
        signature = world.sign_link(ALICE, wallet_key("steward's own"), wallet=new.address)
        world.send(
            world.fns.startWalletRecovery(ALICE, new.address, FAR_FUTURE, signature),
            world.steward1,
        )
    world.register("bob")
    with world.reverts("NoWalletLinked", cid("bob")):
        signature = world.sign_link(cid("bob"), new)
        world.send(
            world.fns.startWalletRecovery(cid("bob"), new.address, FAR_FUTURE, signature),
            world.steward1,
        )
    receipt = start_recovery(world, new)
    ready_at = world.timestamp(receipt) + RECOVERY_DELAY
    with world.reverts("RecoveryPending", ALICE, new.address, ready_at):  # no resetting the clock
        start_recovery(world, wallet_key("other"))


def test_the_current_wallet_cancels_by_its_own_transaction(world, alice):
    fns = world.fns
    start_recovery(world, wallet_key("recovered"))
    with world.reverts("NotAllowedToCancel", ALICE, world.steward2):  # a later holder's steward
        world.send(fns.cancelWalletRecovery(ALICE), world.steward2)
    with world.reverts("NotAllowedToCancel", ALICE, world.outsider):
        world.send(fns.cancelWalletRecovery(ALICE), world.outsider)
    receipt = send_from_wallet(world, alice, fns.cancelWalletRecovery(ALICE))
    assert world.events("WalletRecoveryCancelled", receipt) == [
        {
            "customerId": ALICE,
            "recoveryWallet": wallet_key("recovered").address,
            "by": alice.address,
            "nonce": 2,
        }
    ]
    world.chain.advance_time(RECOVERY_DELAY + 1)
    with world.reverts("NoRecoveryPending", ALICE):
        world.send(fns.completeWalletRecovery(ALICE), world.outsider)
    assert fns.customer(ALICE).call()[2] == alice.address


def test_the_current_wallet_cancels_by_a_relayed_signature(world, alice):
    fns = world.fns
    with world.reverts("NoRecoveryPending", ALICE):
        world.send(fns.cancelWalletRecoveryBySig(ALICE, FAR_FUTURE, b""), world.outsider)
    start_recovery(world, wallet_key("recovered"))
    now = world.chain.latest_timestamp()
    with world.reverts("ExpiredSignature", now - 1):
        call = fns.cancelWalletRecoveryBySig(
            ALICE, now - 1, world.sign_cancel(ALICE, alice, deadline=now - 1)
        )
        world.send(call, world.outsider)
    with world.reverts("InvalidWalletSignature", ALICE, alice.address):  # not the wallet's
        call = fns.cancelWalletRecoveryBySig(
            ALICE, FAR_FUTURE, world.sign_cancel(ALICE, wallet_key("recovered"))
        )
        world.send(call, world.outsider)
    signature = world.sign_cancel(ALICE, alice)
    receipt = world.send(
        fns.cancelWalletRecoveryBySig(ALICE, FAR_FUTURE, signature), world.outsider
    )
    assert world.events("WalletRecoveryCancelled", receipt)[0]["by"] == world.outsider
    assert fns.walletRecovery(ALICE).call() == (ZERO_ADDRESS, 0)


def test_the_custodian_may_withdraw_its_recovery(world, alice):
    start_recovery(world, wallet_key("recovered"))
    world.send(world.fns.cancelWalletRecovery(ALICE), world.steward1)
    assert world.fns.walletRecovery(ALICE).call() == (ZERO_ADDRESS, 0)


def test_a_rotation_cancels_a_pending_recovery(world, alice):
    start_recovery(world, wallet_key("recovered"))
    new = wallet_key("new")
    receipt = world.rotate(ALICE, alice, new)
    assert world.event_names(receipt) == ["WalletRecoveryCancelled", "WalletLinked"]
    world.chain.advance_time(RECOVERY_DELAY + 1)
    with world.reverts("NoRecoveryPending", ALICE):
        world.send(world.fns.completeWalletRecovery(ALICE), world.outsider)
    assert world.fns.customer(ALICE).call()[2] == new.address


def test_a_recovery_to_a_wallet_taken_meanwhile_does_not_complete(world, alice):
    taken = wallet_key("taken")
    start_recovery(world, taken)
    world.register("bob")
    world.link(cid("bob"), taken)
    world.chain.advance_time(RECOVERY_DELAY + 1)
    with world.reverts("WalletInUse", taken.address, cid("bob")):
        world.send(world.fns.completeWalletRecovery(ALICE), world.outsider)


def test_erasure_drops_a_pending_recovery(world, alice):
    start_recovery(world, wallet_key("recovered"))
    world.send(world.fns.erase(ALICE), world.steward2)
    world.send(world.fns.erase(ALICE), world.steward1)
    assert world.fns.walletRecovery(ALICE).call() == (ZERO_ADDRESS, 0)
    world.chain.advance_time(RECOVERY_DELAY + 1)
    with world.reverts("NoRecoveryPending", ALICE):
        world.send(world.fns.completeWalletRecovery(ALICE), world.outsider)
