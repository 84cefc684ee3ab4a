"""Purposes and consents in the read model, answered as the contracts' own views answer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3.types import TxReceipt

from crm_gateway.indexer import ChainIndexer, StepResult
from crm_gateway.runtime import Runtime
from tests.indexer.conftest import ChainWriter, chain_event_keys, snapshot, stored_event_keys
from tests.indexer.test_reorg import Snapshots

FAR_DEADLINE = 2**63
CONSENT_BASIS = 0

pytestmark = pytest.mark.usefixtures("consent_deployed")


@pytest.fixture
def consent_deployed(runtime: Runtime) -> None:
    if "ConsentLedger" not in runtime.contracts.record.contracts:
        pytest.skip("the consent contracts are not deployed (migrations/0003_consent.py)")


def link_wallet(writer: ChainWriter, customer_id: bytes) -> LocalAccount:
    """Register the customer and link a fresh, funded wallet (signed as a wallet would)."""
    writer.register(customer_id)
    wallet = writer.funded_account()
    registry = writer.registry()
    signed = Account.sign_typed_data(
        wallet.key,
        domain_data={
            "name": "CustomerRegistry",
            "version": "1",
            "chainId": writer.w3.eth.chain_id,
            "verifyingContract": registry.address,
        },
        message_types={
            "LinkWallet": [
                {"name": "customerId", "type": "bytes32"},
                {"name": "wallet", "type": "address"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ]
        },
        message_data={
            "customerId": customer_id,
            "wallet": wallet.address,
            "nonce": 0,
            "deadline": FAR_DEADLINE,
        },
    )
    writer.send(
        registry.functions.linkWallet(customer_id, wallet.address, FAR_DEADLINE, signed.signature)
    )
    return wallet


def set_consent(
    writer: ChainWriter,
    wallet: LocalAccount,
    customer_id: bytes,
    purpose_id: bytes,
    *,
    granted: bool,
    expires_at: int = 0,
) -> TxReceipt:
    ledger = writer.runtime.contracts["ConsentLedger"]
    purposes = writer.runtime.contracts["PurposeRegistry"]
    nonce = ledger.functions.nonces(customer_id).call()
    version = purposes.functions.purposeStatus(purpose_id).call()[0]
    # Within the ledger's maxSignatureLifetime (SIGNATURE_TTL_SECONDS) of the chain's clock.
    deadline = int(writer.w3.eth.get_block("latest")["timestamp"]) + 600
    change = (customer_id, purpose_id, version, 1, granted, expires_at, nonce, deadline)
    return writer.send(ledger.functions.setConsent(change), signer=wallet)


def test_consents_and_purposes_follow_the_ledger(
    runtime: Runtime, writer: ChainWriter, new_indexer: Callable[..., ChainIndexer]
) -> None:
    purposes = runtime.contracts["PurposeRegistry"]
    ledger = runtime.contracts["ConsentLedger"].functions
    read_model = runtime.read_model
    email, sms = keccak(text="marketing.email"), keccak(text="marketing.sms")
    for purpose in (email, sms):
        writer.send(purposes.functions.definePurpose(purpose, keccak(purpose), CONSENT_BASIS))
    alice_id, bob_id = writer.new_customer_id(), writer.new_customer_id()
    alice, bob = link_wallet(writer, alice_id), link_wallet(writer, bob_id)
    granted = set_consent(writer, alice, alice_id, email, granted=True)
    now = writer.w3.eth.get_block("latest")["timestamp"]
    set_consent(writer, bob, bob_id, email, granted=True, expires_at=now + 3600)
    set_consent(writer, alice, alice_id, sms, granted=True)

    indexer = new_indexer()
    indexer.run_to_head()
    alice_hex, bob_hex, email_hex = "0x" + alice_id.hex(), "0x" + bob_id.hex(), "0x" + email.hex()
    decision = read_model.consent(alice_hex, email_hex, 1)
    assert decision.granted
    assert decision.reason is None
    assert decision.block_number == granted["blockNumber"]
    assert decision.tx_hash == granted["transactionHash"].to_0x_hex()
    assert decision.receipt_hash == "0x" + ledger.consent(alice_id, email, 1).call()[4].hex()
    assert decision.as_of_block == read_model.as_of_block()
    assert read_model.audience(email_hex, 1) == sorted([alice_hex, bob_hex])
    later = datetime.fromtimestamp(now + 3600, UTC) + timedelta(seconds=1)
    expired = read_model.consent(bob_hex, email_hex, 1, now=later)
    assert (expired.granted, expired.reason) == (False, "expired")
    assert read_model.audience(email_hex, 1, now=later) == [alice_hex]
    assert read_model.consent(bob_hex, "0x" + sms.hex(), 1).reason == "no_consent"
    assert read_model.consent(alice_hex, email_hex, 2).reason == "no_consent"
    [purpose] = [p for p in read_model.purposes() if p.purpose_id == email_hex]
    assert (purpose.version, purpose.basis, purpose.active) == (1, "consent", True)

    history = read_model.consent_history(alice_hex)
    assert [(h.purpose_id, h.granted, h.method) for h in history] == [
        (email_hex, True, "wallet_transaction"),
        ("0x" + sms.hex(), True, "wallet_transaction"),
    ]
    assert [h.nonce for h in history] == [0, 1]

    revoked = set_consent(writer, alice, alice_id, email, granted=False)
    writer.send(purposes.functions.updateNotice(sms, keccak(text="sms notice v2")))
    indexer.run_to_head()
    decision = read_model.consent(alice_hex, email_hex, 1)
    assert (decision.granted, decision.reason) == (False, "revoked")
    assert decision.block_number == revoked["blockNumber"]
    sms_decision = read_model.consent(alice_hex, "0x" + sms.hex(), 1)
    assert (sms_decision.reason, sms_decision.current_purpose_version) == ("notice_changed", 2)
    for customer, purpose_id in [(alice_id, email), (alice_id, sms), (bob_id, email)]:
        on_chain = ledger.hasConsent(customer, purpose_id, 1).call()
        assert read_model.has_consent("0x" + customer.hex(), "0x" + purpose_id.hex(), 1) == on_chain
    writer.send(purposes.functions.retirePurpose(email))
    indexer.run_to_head()
    assert read_model.consent(bob_hex, email_hex, 1).reason == "purpose_retired"
    assert read_model.audience(email_hex, 1) == []


def test_a_reorged_revocation_is_undone_for_that_customer_only(
    runtime: Runtime, writer: ChainWriter, new_indexer: Callable[..., ChainIndexer]
) -> None:
    purposes = runtime.contracts["PurposeRegistry"]
    email = keccak(text="marketing.email")
    writer.send(purposes.functions.definePurpose(email, keccak(email), CONSENT_BASIS))
    alice_id, bob_id = writer.new_customer_id(), writer.new_customer_id()
    alice, bob = link_wallet(writer, alice_id), link_wallet(writer, bob_id)
    set_consent(writer, alice, alice_id, email, granted=True)
    set_consent(writer, bob, bob_id, email, granted=True)
    indexer = new_indexer()
    indexer.run_to_head()

    snapshots = Snapshots(runtime)
    snapshot_id = snapshots.take()
    set_consent(writer, alice, alice_id, email, granted=False)
    indexer.run_to_head()
    assert not runtime.read_model.has_consent("0x" + alice_id.hex(), "0x" + email.hex(), 1)
    snapshots.revert(snapshot_id)
    writer.grant("AGENT")
    writer.grant("AGENT")
    steps: list[StepResult] = []
    indexer.run_to_head(steps.append)
    assert "rewound" in [s.kind for s in steps]
    assert runtime.read_model.has_consent("0x" + alice_id.hex(), "0x" + email.hex(), 1)
    assert len(runtime.read_model.consent_history("0x" + alice_id.hex())) == 1
    assert set(stored_event_keys(runtime)) == chain_event_keys(runtime)
    followed = snapshot(runtime)
    indexer.drop()
    indexer.run_to_head()
    assert snapshot(runtime) == followed
