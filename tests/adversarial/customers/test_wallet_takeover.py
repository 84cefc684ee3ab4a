"""Wallet takeover: the wallet is the customer's, whatever a member organisation does.

Issue 11, attack 1: another organisation's steward joins the customer (`register` on an id it
read from the events: `HolderJoined`) and links a wallet of its own, then signs consents with
it. And the gateway's own `POST /v1/customers/{id}/wallet` let a steward do the same. Both are
refused now, and rotation and recovery work for the customer, end to end through the API.
"""

from __future__ import annotations

from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils.crypto import keccak

from tests.adversarial.customers.conftest import Consortium, change_body, change_tuple, sign

CHAIN_REFUSED = "https://crm-chaincode.dev/problems/chain-refused"


def _raw(customer_id: str) -> bytes:
    return bytes.fromhex(customer_id[2:])


def _link_signature(world: Consortium, wallet: Any, nonce: int, deadline: int) -> bytes:
    typed = world.get(
        f"/v1/customers/{world.alice}/wallet/typed-data", world.steward, wallet=wallet.address
    )
    typed["message"].update(nonce=nonce, deadline=deadline)
    return bytes(Account.sign_typed_data(wallet.key, full_message=typed).signature)


def test_another_organisations_steward_cannot_take_over_the_wallet(consortium: Consortium):
    world = consortium
    registry = world.contract("CustomerRegistry").functions
    mallory = world.org2_steward
    takeover = Account.create()  # a wallet organisation 2 controls
    # It becomes a holder of Alice (her id is public in the events): that still works.
    world.transact(mallory, registry.register(_raw(world.alice), keccak(text="org 2's copy")))
    assert registry.isHolder(_raw(world.alice), world.org2_id).call()

    deadline = world.chain_time() + 600
    signature = _link_signature(world, takeover, 1, deadline)
    # ... but it gets no power over her wallet: no link, no recovery.
    link = registry.linkWallet(_raw(world.alice), takeover.address, deadline, signature)
    refused = world.refusal(mallory, link)
    assert refused.name == "NotWalletCustodian", refused
    assert refused.args["orgId"] == world.org2_id, refused
    recovery = registry.startWalletRecovery(
        _raw(world.alice), takeover.address, deadline, signature
    )
    assert world.refusal(mallory, recovery).name == "NotWalletCustodian"
    # Nor can it rotate without her wallet's signature (its own key signing "as" her wallet).
    forged = _rotation_typed(world, takeover.address)
    rotation = registry.rotateWallet(
        _raw(world.alice),
        takeover.address,
        forged["current_wallet"]["message"]["deadline"],
        sign(mallory, forged["current_wallet"]),
        sign(takeover, forged["new_wallet"]),
    )
    refused = world.refusal(mallory, rotation)
    assert refused.name == "InvalidWalletSignature"
    assert refused.args["wallet"].lower() == world.alice_wallet.address.lower()
    assert registry.customer(_raw(world.alice)).call()[2] == world.alice_wallet.address

    # So a consent it signs with its wallet is not Alice's: refused.
    typed = world.consent_typed(granted=True)
    relayed = world.post(
        "/v1/consents?wait=true", change_body(typed, sign(takeover, typed)), world.relayer
    )
    assert relayed.status_code == 422
    assert relayed.json()["error"]["name"] == "InvalidConsentSignature"
    assert world.check()["granted"] is False


def test_a_later_holder_cannot_make_the_first_link_either(consortium: Consortium):
    """A customer not linked yet: the organisation that joins later cannot link first."""
    world = consortium
    registry = world.contract("CustomerRegistry").functions
    created = world.post("/v1/customers?wait=true", {"email": "bob@example.com"}, world.steward)
    bob = created.json()["customer_id"]
    world.transact(world.org2_steward, registry.register(_raw(bob), keccak(text="org 2's bob")))
    takeover = Account.create()
    deadline = world.chain_time() + 600
    typed = world.get(
        f"/v1/customers/{bob}/wallet/typed-data", world.steward, wallet=takeover.address
    )
    signature = bytes(Account.sign_typed_data(takeover.key, full_message=typed).signature)
    link = registry.linkWallet(_raw(bob), takeover.address, typed["message"]["deadline"], signature)
    refused = world.refusal(world.org2_steward, link)
    assert refused.name == "NotWalletCustodian"
    assert (refused.args["customerId"], refused.args["orgId"]) == (bob, world.org2_id)
    assert deadline  # (the typed data's deadline is the gateway's, from the chain's clock)


def test_the_gateway_endpoint_does_not_let_a_steward_replace_the_wallet(consortium: Consortium):
    world = consortium
    own = Account.create()  # a wallet the steward controls
    typed = world.get(
        f"/v1/customers/{world.alice}/wallet/typed-data", world.steward, wallet=own.address
    )
    body = {
        "wallet": own.address,
        "deadline": typed["message"]["deadline"],
        "signature": sign(own, typed),
    }
    for wait in ("true", "false"):
        response = world.post(
            f"/v1/customers/{world.alice}/wallet?wait={wait}", body, world.steward
        )
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["type"] == CHAIN_REFUSED
        assert problem["error"]["name"] == "WalletAlreadyLinked"
    # Organisation 2's key is not even heard by organisation 1's gateway.
    org2_key = world.issue(world.org2_id, world.org2_steward.address, "DATA_STEWARD")
    response = world.post(f"/v1/customers/{world.alice}/wallet?wait=true", body, org2_key)
    assert response.status_code == 403
    assert world.wallet_status()["wallet"] == world.alice_wallet.address


# ------------------------------------------------------------------------------------------------
# What the customer can do: rotation, recovery with a delay, cancellation
# ------------------------------------------------------------------------------------------------


def _rotation_typed(world: Consortium, new_wallet: str) -> dict[str, Any]:
    return dict(
        world.get(
            f"/v1/customers/{world.alice}/wallet/rotation/typed-data",
            world.relayer,
            new_wallet=new_wallet,
        )
    )


def test_the_customer_rotates_her_wallet_through_the_api(consortium: Consortium):
    world = consortium
    new = Account.create()
    typed = _rotation_typed(world, new.address)
    body = {
        "new_wallet": new.address,
        "deadline": typed["current_wallet"]["message"]["deadline"],
        "current_signature": sign(world.alice_wallet, typed["current_wallet"]),
        "new_signature": sign(new, typed["new_wallet"]),
    }
    # Without the new wallet's own signature, or with the steward's in place of Alice's: refused.
    for forged in (
        {**body, "new_signature": sign(world.steward_account, typed["new_wallet"])},
        {**body, "current_signature": sign(world.steward_account, typed["current_wallet"])},
    ):
        refused = world.post(
            f"/v1/customers/{world.alice}/wallet/rotation?wait=true", forged, world.relayer
        )
        assert refused.status_code == 422
        assert refused.json()["error"]["name"] == "InvalidWalletSignature"
    rotated = world.post(
        f"/v1/customers/{world.alice}/wallet/rotation?wait=true", body, world.relayer
    )
    assert rotated.status_code == 200, rotated.text
    assert world.wallet_status()["wallet"] == new.address
    assert world.timeline_events().count("WalletLinked") == 2

    # The old wallet no longer speaks for Alice; the new one does.
    typed_change = world.consent_typed(granted=True)
    old = change_body(typed_change, sign(world.alice_wallet, typed_change))
    assert world.post("/v1/consents?wait=true", old, world.relayer).status_code == 422
    new_change = change_body(typed_change, sign(new, typed_change))
    assert world.post("/v1/consents?wait=true", new_change, world.relayer).status_code == 200
    assert world.check()["granted"] is True


def _start_recovery(world: Consortium, new: Any) -> Any:
    typed = world.get(
        f"/v1/customers/{world.alice}/wallet/typed-data", world.steward, wallet=new.address
    )
    body = {
        "wallet": new.address,
        "deadline": typed["message"]["deadline"],
        "signature": sign(new, typed),
    }
    return world.post(f"/v1/customers/{world.alice}/wallet/recovery?wait=true", body, world.steward)


def _complete(world: Consortium) -> Any:
    return world.post(
        f"/v1/customers/{world.alice}/wallet/recovery/completion?wait=true", None, world.relayer
    )


def test_recovery_waits_for_the_delay_and_the_customer_can_cancel_it(consortium: Consortium):
    world = consortium
    delay = world.runtime.settings.wallet_recovery_delay_seconds
    assert delay == 172_800  # the default: 48 h
    stolen = Account.create()  # a steward's recovery the customer did not ask for
    started = _start_recovery(world, stolen)
    assert started.status_code == 200, started.text
    status = world.wallet_status()
    assert status["wallet"] == world.alice_wallet.address
    assert status["recovery"]["wallet"] == stolen.address
    assert status["recovery_delay_seconds"] == delay
    early = _complete(world)
    assert early.status_code == 422
    assert early.json()["error"]["name"] == "RecoveryNotReady"

    # Alice's wallet cancels it, by a signature that the relayer carries.
    typed = world.get(
        f"/v1/customers/{world.alice}/wallet/recovery/cancellation/typed-data", world.relayer
    )
    forged = {
        "deadline": typed["message"]["deadline"],
        "signature": sign(world.steward_account, typed),
    }
    path = f"/v1/customers/{world.alice}/wallet/recovery/cancellation?wait=true"
    refused = world.post(path, forged, world.relayer)
    assert refused.json()["error"]["name"] == "InvalidWalletSignature"
    body = {"deadline": typed["message"]["deadline"], "signature": sign(world.alice_wallet, typed)}
    assert world.post(path, body, world.relayer).status_code == 200
    world.advance_time(delay + 1)
    late = _complete(world)
    assert late.status_code == 422
    assert late.json()["error"]["name"] == "NoRecoveryPending"
    assert world.wallet_status() == {**status, "recovery": None, "nonce": status["nonce"] + 1}

    # A recovery she does not cancel (her wallet is lost) completes after the delay.
    recovered = Account.create()
    assert _start_recovery(world, recovered).status_code == 200
    world.advance_time(delay // 2)
    assert _complete(world).json()["error"]["name"] == "RecoveryNotReady"
    world.advance_time(delay // 2 + 1)
    assert _complete(world).status_code == 200
    assert world.wallet_status()["wallet"] == recovered.address
    events = world.timeline_events()
    for name in ("WalletRecoveryStarted", "WalletRecoveryCancelled", "WalletRecoveryCompleted"):
        assert name in events, events
    # The indexer's read model follows the nonce through the recovery events.
    chain_nonce = world.contract("CustomerRegistry").functions.walletNonce(_raw(world.alice)).call()
    assert world.runtime.read_model.customer(world.alice).wallet_nonce == chain_nonce


def test_an_independent_eip712_implementation_makes_the_same_digests(consortium: Consortium):
    """RotateWallet and ConsentChange hashed by hand from the EIP-712 spec (eth-abi + keccak,
    not eth-account's typed-data encoder), signed as a raw digest: the API accepts them."""
    world = consortium
    registry = world.contract("CustomerRegistry")
    chain_id = world.runtime.chain.chain_id

    def domain(name: str, contract: str) -> bytes:
        return keccak(
            abi_encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [
                    keccak(
                        text="EIP712Domain(string name,string version,uint256 chainId,"
                        "address verifyingContract)"
                    ),
                    keccak(text=name),
                    keccak(text="1"),
                    chain_id,
                    contract,
                ],
            )
        )

    def digest(
        domain_separator: bytes, encode_type: str, types: list[str], values: list[Any]
    ) -> bytes:
        struct = keccak(abi_encode(["bytes32", *types], [keccak(text=encode_type), *values]))
        return keccak(b"\x19\x01" + domain_separator + struct)

    def raw_sign(key: Any, message_digest: bytes) -> str:
        return Account.unsafe_sign_hash(message_digest, key.key).signature.to_0x_hex()

    registry_domain = domain("CustomerRegistry", registry.address)
    assert registry_domain == bytes(registry.functions.DOMAIN_SEPARATOR().call())
    new = Account.create()
    nonce = registry.functions.walletNonce(_raw(world.alice)).call()
    deadline = world.chain_time() + 600
    rotate = digest(
        registry_domain,
        "RotateWallet(bytes32 customerId,address currentWallet,address newWallet,uint256 nonce,"
        "uint256 deadline)",
        ["bytes32", "address", "address", "uint256", "uint256"],
        [_raw(world.alice), world.alice_wallet.address, new.address, nonce, deadline],
    )
    link = digest(
        registry_domain,
        "LinkWallet(bytes32 customerId,address wallet,uint256 nonce,uint256 deadline)",
        ["bytes32", "address", "uint256", "uint256"],
        [_raw(world.alice), new.address, nonce, deadline],
    )
    body = {
        "new_wallet": new.address,
        "deadline": deadline,
        "current_signature": raw_sign(world.alice_wallet, rotate),
        "new_signature": raw_sign(new, link),
    }
    rotated = world.post(
        f"/v1/customers/{world.alice}/wallet/rotation?wait=true", body, world.relayer
    )
    assert rotated.status_code == 200, rotated.text

    ledger = world.contract("ConsentLedger")
    typed = world.consent_typed(granted=True)
    m = typed["message"]
    change = digest(
        domain("ConsentLedger", ledger.address),
        "ConsentChange(bytes32 customerId,bytes32 purposeId,uint64 purposeVersion,uint64 orgId,"
        "bool granted,uint64 expiresAt,uint256 nonce,uint256 deadline)",
        ["bytes32", "bytes32", "uint64", "uint64", "bool", "uint64", "uint256", "uint256"],
        [
            _raw(m["customerId"]),
            _raw(m["purposeId"]),
            m["purposeVersion"],
            m["orgId"],
            m["granted"],
            m["expiresAt"],
            m["nonce"],
            m["deadline"],
        ],
    )
    assert change == bytes(ledger.functions.hashConsentChange(change_tuple(typed)).call())
    relayed = world.post(
        "/v1/consents?wait=true", change_body(typed, raw_sign(new, change)), world.relayer
    )
    assert relayed.status_code == 200, relayed.text
    assert world.check()["granted"] is True
