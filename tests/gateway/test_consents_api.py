"""Consent through the API: wallets sign, a relayer submits, the gateway enforces and proves it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import jsonschema
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from crm_gateway.chain.fees import fee_fields
from crm_gateway.runtime import Runtime
from crm_gateway.store.models import Operation
from tests.gateway.conftest import define_purpose, wait_until

MARKETING = "marketing.email"


class World:
    """A customer with a linked wallet, purposes, and the keys of each role involved."""

    def __init__(
        self,
        client: TestClient,
        runtime: Runtime,
        admin: dict[str, str],
        steward: dict[str, str],
        relayer: dict[str, str],
        marketer: dict[str, str],
    ) -> None:
        self.client, self.runtime = client, runtime
        self.admin, self.steward, self.relayer = admin, steward, relayer
        self.marketer = marketer
        self.marketing = define_purpose(client, admin, runtime, MARKETING, "consent")
        created = client.post(
            "/v1/customers?wait=true", json={"email": "carol@example.com"}, headers=steward
        )
        assert created.status_code == 201, created.text
        self.customer: str = created.json()["customer_id"]
        self.wallet: LocalAccount = Account.create()
        self.link(self.wallet)

    def link(self, wallet: LocalAccount) -> None:
        typed = self.client.get(
            f"/v1/customers/{self.customer}/wallet/typed-data",
            params={"wallet": wallet.address},
            headers=self.steward,
        ).json()
        body = {
            "wallet": wallet.address,
            "deadline": typed["message"]["deadline"],
            "signature": Account.sign_typed_data(
                wallet.key, full_message=typed
            ).signature.to_0x_hex(),
        }
        linked = self.client.post(
            f"/v1/customers/{self.customer}/wallet?wait=true", json=body, headers=self.steward
        )
        assert linked.status_code == 200, linked.text

    def typed(self, granted: bool, purpose: str = MARKETING, expiry: int = 0) -> dict[str, Any]:
        response = self.client.get(
            "/v1/consents/typed-data",
            params={
                "customer": self.customer,
                "purpose": purpose,
                "org": 1,
                "granted": granted,
                "expiry": expiry,
            },
            headers=self.relayer,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def signed(self, typed: dict[str, Any], key: Any = None) -> dict[str, Any]:
        signature = Account.sign_typed_data(key or self.wallet.key, full_message=typed).signature
        message = typed["message"]
        return {
            "customer_id": message["customerId"],
            "purpose_id": message["purposeId"],
            "purpose_version": message["purposeVersion"],
            "org_id": message["orgId"],
            "granted": message["granted"],
            "expires_at": message["expiresAt"],
            "nonce": message["nonce"],
            "deadline": message["deadline"],
            "signature": signature.to_0x_hex(),
        }

    def relay(self, body: dict[str, Any], wait: bool = True) -> Any:
        return self.client.post(
            f"/v1/consents?wait={str(wait).lower()}", json=body, headers=self.relayer
        )

    def check(self, **extra: Any) -> dict[str, Any]:
        params = {"customer": self.customer, "purpose": MARKETING, "org": 1, **extra}
        return dict(
            self.client.get("/v1/consents/check", params=params, headers=self.relayer).json()
        )

    def read(self, purpose: str = MARKETING) -> Any:
        return self.client.get(
            f"/v1/customers/{self.customer}?purpose={purpose}", headers=self.steward
        )

    def operations(self) -> int:
        with self.runtime.session_factory() as session:
            return session.query(Operation).count()


@pytest.fixture
def world(
    client: TestClient,
    runtime: Runtime,
    admin_headers: dict[str, str],
    role_key: Callable[[str], dict[str, str]],
    support_purpose: str,
) -> World:
    return World(
        client,
        runtime,
        admin_headers,
        role_key("DATA_STEWARD"),
        role_key("RELAYER"),
        role_key("MARKETER"),
    )


def test_a_signed_consent_allows_the_read_and_a_revoke_refuses_the_next(world: World) -> None:
    refused = world.read()
    assert refused.status_code == 403
    assert refused.json()["reason"] == "no_consent"

    granted = world.relay(world.signed(world.typed(granted=True)))
    assert granted.status_code == 200, granted.text
    wait_until(lambda: world.check()["granted"])
    assert world.read().status_code == 200

    revoked = world.relay(world.signed(world.typed(granted=False)))
    assert revoked.status_code == 200, revoked.text
    revoke_block = revoked.json()["block_number"]
    mined = time.monotonic()
    wait_until(lambda: world.read().status_code == 403)
    delay = time.monotonic() - mined
    refusal = world.read().json()
    assert refusal["reason"] == "revoked"
    assert f"revoked consent at block {revoke_block}" in refusal["detail"]
    print(f"revocation enforced {delay * 1000:.0f} ms after its block was mined")
    assert world.read("support").status_code == 200  # contract basis: no consent needed


def test_the_check_from_the_read_model_agrees_with_the_contract(world: World) -> None:
    assert world.check()["granted"] is False
    world.relay(world.signed(world.typed(granted=True, expiry=int(time.time()) + 3600)))
    wait_until(lambda: world.check()["granted"])
    from_model, from_chain = world.check(), world.check(consistency="chain")
    assert from_model["granted"] is from_chain["granted"] is True
    assert from_model["expires_at"] is not None
    assert from_model["as_of_block"] >= 1
    assert from_chain["consistency"] == "chain"


def test_a_batch_of_signed_changes_goes_in_one_transaction(world: World) -> None:
    second = define_purpose(world.client, world.admin, world.runtime, "marketing.sms", "consent")
    first_typed = world.typed(granted=True)
    first = world.signed(first_typed)
    second_typed = world.typed(granted=True, purpose="marketing.sms")
    second_typed["message"]["nonce"] = first_typed["message"]["nonce"] + 1
    response = world.relay({"changes": [first, world.signed(second_typed)]})
    assert response.status_code == 200, response.text
    changed = [e for e in response.json()["result"]["events"] if e["event"] == "ConsentChanged"]
    assert [e["args"]["purposeId"] for e in changed] == [world.marketing, second]


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        ("wrong_signer", "InvalidConsentSignature"),
        ("replayed_nonce", "InvalidNonce"),
        ("past_deadline", "DeadlineExpired"),
    ],
)
def test_refused_changes_name_the_error_and_send_nothing(
    world: World, tamper: str, error: str
) -> None:
    typed = world.typed(granted=True)
    if tamper == "replayed_nonce":
        assert world.relay(world.signed(typed)).status_code == 200
    if tamper == "past_deadline":
        typed["message"]["deadline"] = int(time.time()) - 10
    body = world.signed(typed, key=Account.create().key if tamper == "wrong_signer" else None)
    before = world.operations()
    response = world.relay(body, wait=False)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["error"]["name"] == error
    assert world.operations() == before


def test_unknown_purpose_and_erased_customer_are_refused(world: World) -> None:
    unknown = world.client.get(
        "/v1/consents/typed-data",
        params={"customer": world.customer, "purpose": "never.defined", "org": 1, "granted": True},
        headers=world.relayer,
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["name"] == "UnknownPurpose"

    typed = world.typed(granted=True)
    erased = world.client.delete(f"/v1/customers/{world.customer}?wait=true", headers=world.steward)
    assert erased.status_code == 200
    response = world.relay(world.signed(typed), wait=False)
    assert response.status_code == 422
    assert response.json()["error"]["name"] == "CustomerIsErased"


@pytest.mark.parametrize(
    "signature",
    ["0x1234", "0x" + "zz" * 65, "not hex", "0x" + "11" * 66],
)
def test_malformed_signatures_are_422_naming_the_field(world: World, signature: str) -> None:
    body = {**world.signed(world.typed(granted=True)), "signature": signature}
    response = world.relay(body, wait=False)
    assert response.status_code == 422
    assert any(e["field"].endswith("signature") for e in response.json()["errors"])


def test_only_relayer_keys_relay(world: World) -> None:
    response = world.client.post(
        "/v1/consents", json=world.signed(world.typed(granted=True)), headers=world.steward
    )
    assert response.status_code == 403
    assert response.json()["required_role"] == "RELAYER"


def test_the_customers_own_transaction_is_checked_and_broadcast(world: World) -> None:
    runtime = world.runtime
    w3 = runtime.chain.w3
    runtime.chain.dev_fund(world.wallet.address, 10**18)
    message = world.typed(granted=True)["message"]
    change = (
        message["customerId"],
        message["purposeId"],
        message["purposeVersion"],
        message["orgId"],
        True,
        0,
        message["nonce"],
        message["deadline"],
    )
    ledger = runtime.contracts["ConsentLedger"]
    tx = ledger.functions.setConsent(change).build_transaction(
        {
            "from": world.wallet.address,
            "nonce": w3.eth.get_transaction_count(world.wallet.address),
            "gas": 300_000,
            "chainId": runtime.chain.chain_id,
            **fee_fields(w3),
        }
    )
    raw = world.wallet.sign_transaction(tx).raw_transaction.to_0x_hex()
    response = world.client.post("/v1/transactions/raw", json={"raw": raw}, headers=world.relayer)
    assert response.status_code == 202, response.text
    receipt = w3.eth.wait_for_transaction_receipt(response.json()["tx_hash"])
    assert receipt["status"] == 1
    assert world.check(consistency="chain")["granted"] is True

    stranger = Account.create()
    unsigned = {k: v for k, v in tx.items() if k != "from"}
    elsewhere = stranger.sign_transaction({**unsigned, "nonce": 0}).raw_transaction.to_0x_hex()
    refused = world.client.post(
        "/v1/transactions/raw", json={"raw": elsewhere}, headers=world.relayer
    )
    assert refused.status_code == 403
    garbage = world.client.post(
        "/v1/transactions/raw", json={"raw": "0xdeadbeef"}, headers=world.relayer
    )
    assert garbage.status_code == 400


def test_history_receipts_and_audience(world: World) -> None:
    world.relay(world.signed(world.typed(granted=True)))
    world.relay(world.signed(world.typed(granted=False)))
    wait_until(
        lambda: (
            len(
                world.client.get(f"/v1/consents/{world.customer}", headers=world.steward).json()[
                    "history"
                ]
            )
            == 2
        )
    )
    history = world.client.get(f"/v1/consents/{world.customer}", headers=world.steward).json()
    assert [h["granted"] for h in history["history"]] == [True, False]
    assert all(h["tx_hash"].startswith("0x") and h["block_number"] > 0 for h in history["history"])
    assert history["current"][0]["granted"] is False

    schema = json.loads(
        files("crm_gateway.schemas").joinpath("consent_receipt.schema.json").read_text()
    )
    states = []
    for item in history["history"]:
        receipt = world.client.get(
            f"/v1/consents/{world.customer}/receipts/{item['receipt_id']}", headers=world.steward
        ).json()
        jsonschema.validate(receipt, schema, format_checker=jsonschema.FormatChecker())
        assert receipt["proof"]["tx_hash"] == item["tx_hash"]
        states.append(receipt["event"]["state"])
    assert states == ["superseded", "withdrawn"]
    audience = world.client.get(
        "/v1/marketing/audience", params={"purpose": MARKETING, "org": 1}, headers=world.marketer
    )
    assert world.customer not in audience.json()["customer_ids"]


def test_a_new_notice_version_voids_earlier_consent(world: World) -> None:
    world.relay(world.signed(world.typed(granted=True)))
    wait_until(lambda: world.check()["granted"])
    audience = world.client.get(
        "/v1/marketing/audience", params={"purpose": MARKETING, "org": 1}, headers=world.marketer
    )
    assert world.customer in audience.json()["customer_ids"]
    updated = world.client.post(
        f"/v1/purposes/{MARKETING}/notice?wait=true",
        json={"notice_text": "A new notice."},
        headers=world.admin,
    )
    assert updated.status_code == 200, updated.text
    wait_until(lambda: not world.check()["granted"])
    assert world.check()["reason"] == "notice_changed"
    assert world.read().status_code == 403
