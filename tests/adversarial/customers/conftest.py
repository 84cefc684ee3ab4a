"""A consortium of two organisations, a customer with her own wallet, and members who misbehave.

Organisation 1 runs the gateway under test (a real gateway app on the embedded chain or on a
real Anvil node, its contracts deployed by the migrations, its pipeline running). Organisation 2
is admitted through the proposal flow (proposed and executed through the gateway's API by
organisation 1's admin, the only member so far); its admin makes its own steward a
DATA_STEWARD, and from then on it acts as a misbehaving member would: with its own keys, straight
on the chain, bypassing any gateway. Organisation 1 has a steward and a relayer (API keys of the
gateway); the customer Alice is registered by organisation 1 and links her wallet (an eth-account
key that only signs) through the API.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from web3 import EthereumTesterProvider

from crm_gateway.api.app import create_app
from crm_gateway.chain.errors import RevertError
from crm_gateway.chain.fees import fee_fields
from crm_gateway.config import ChainKind, Settings
from crm_gateway.runtime import Runtime, build_runtime
from crm_gateway.security.apikeys import create_api_key
from crm_gateway.services.consent import purpose_id
from tests.conftest import deploy_unless_embedded, free_port, make_settings
from tests.gateway.conftest import add_organization, define_purpose

MARKETING = "marketing.email"


@pytest.fixture(params=["embedded", pytest.param("anvil", marks=pytest.mark.anvil)])
def adversarial_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings on the embedded chain, or on a real Anvil node started for the test."""
    if request.param == "embedded":
        yield make_settings(tmp_path)
        return
    from crm_gateway.chain.anvil import AnvilNode

    settings = make_settings(tmp_path, chain_kind=ChainKind.ANVIL, anvil_port=free_port())
    node = AnvilNode(settings)
    node.start()
    try:
        yield settings
    finally:
        node.stop()


@dataclass
class Consortium:
    """The gateway of organisation 1, its keys, organisation 2's keys, and Alice."""

    client: TestClient
    runtime: Runtime
    admin: dict[str, str]
    steward: dict[str, str]
    relayer: dict[str, str]
    steward_account: LocalAccount
    relayer_account: LocalAccount
    founder: LocalAccount
    org2_admin: LocalAccount
    org2_steward: LocalAccount
    org2_id: int
    alice: str = ""
    alice_wallet: LocalAccount = field(default_factory=Account.create)
    marketing: str = ""

    # --- the chain ----------------------------------------------------------------------------

    @property
    def w3(self) -> Any:
        return self.runtime.chain.w3

    def contract(self, name: str) -> Any:
        return self.runtime.contracts[name]

    def chain_time(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance_time(self, seconds: int) -> None:
        """Move the chain's clock (only ever inside a test: eth-tester time travel, or Anvil's
        `evm_increaseTime`) and mine a block there."""
        provider = self.w3.provider
        if isinstance(provider, EthereumTesterProvider):
            tester = provider.ethereum_tester
            tester.time_travel(self.chain_time() + seconds)
            tester.mine_blocks(1)
        else:
            provider.make_request("evm_increaseTime", [seconds])
            provider.make_request("evm_mine", [])

    def transact(self, account: LocalAccount, call: Any) -> Any:
        """`account` signs and sends `call` itself, as a member acting outside any gateway."""
        tx = call.build_transaction(
            {
                "from": account.address,
                "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
                "chainId": self.runtime.chain.chain_id,
                "gas": 1_000_000,
                **fee_fields(self.w3),
            }
        )
        signed = account.sign_transaction(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(signed.raw_transaction)
        )
        assert receipt["status"] == 1, receipt
        return receipt

    def refusal(self, account: LocalAccount, call: Any) -> RevertError:
        """The custom error the contract refuses `call` from `account` with (simulated as that
        account would send it); fails the test if it is accepted."""
        with pytest.raises(Exception) as info:  # noqa: PT011 - decoded right below
            call.estimate_gas({"from": account.address})
        decoded = self.runtime.contracts.artifacts.error_decoder.decode_exception(info.value)
        assert decoded is not None, info.value
        return decoded

    # --- the API ------------------------------------------------------------------------------

    def get(self, path: str, headers: dict[str, str], **params: Any) -> Any:
        response = self.client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: Any, headers: dict[str, str]) -> Any:
        return self.client.post(path, json=body, headers=headers)

    def consent_typed(self, granted: bool = True) -> dict[str, Any]:
        return dict(
            self.get(
                "/v1/consents/typed-data",
                self.relayer,
                customer=self.alice,
                purpose=MARKETING,
                org=1,
                granted=granted,
            )
        )

    def check(self) -> dict[str, Any]:
        return dict(
            self.get(
                "/v1/consents/check",
                self.relayer,
                customer=self.alice,
                purpose=MARKETING,
                org=1,
                consistency="chain",
            )
        )

    def wallet_status(self) -> dict[str, Any]:
        return dict(self.get(f"/v1/customers/{self.alice}/wallet", self.steward))

    def timeline_events(self) -> list[str]:
        """The chain events in Alice's timeline (as the read model has them, once it caught up)."""
        deadline = time.monotonic() + 20
        head = int(self.w3.eth.block_number)
        while self.runtime.read_model.as_of_block() < head and time.monotonic() < deadline:
            time.sleep(0.02)
        body = self.get(f"/v1/customers/{self.alice}/timeline", self.steward)
        return [item["type"] for item in body["items"] if item["source"] == "chain"]

    def issue(self, org_id: int, account: str, role: str) -> dict[str, str]:
        return {"X-API-Key": _key(self.runtime, org_id, account, role)}


def sign(key: LocalAccount, typed: dict[str, Any]) -> str:
    return Account.sign_typed_data(key.key, full_message=typed).signature.to_0x_hex()


def change_body(typed: dict[str, Any], signature: str) -> dict[str, Any]:
    """The body of `POST /v1/consents` for a signed `ConsentChange`."""
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
        "signature": signature,
    }


def change_tuple(typed: dict[str, Any]) -> tuple[Any, ...]:
    m = typed["message"]
    return (
        m["customerId"],
        m["purposeId"],
        m["purposeVersion"],
        m["orgId"],
        m["granted"],
        m["expiresAt"],
        m["nonce"],
        m["deadline"],
    )


def _grant(world: Consortium, role: str, account: LocalAccount, admin: LocalAccount) -> None:
    """`admin` grants `role`; an account of no organisation first agrees to join by its own
    transaction (`acceptMembership`), as the Consortium requires."""
    fns = world.contract("Consortium").functions
    if fns.organizationOf(account.address).call() == 0:
        world.transact(account, fns.acceptMembership(fns.organizationOf(admin.address).call()))
    world.transact(admin, fns.grantRole(fns[role]().call(), account.address))


@pytest.fixture
def consortium(adversarial_settings: Settings) -> Iterator[Consortium]:
    deploy_unless_embedded(adversarial_settings)
    runtime = build_runtime(adversarial_settings)
    try:
        with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
            yield _build(client, runtime)
    finally:
        runtime.close()


def _account(runtime: Runtime, *, keystore: bool) -> LocalAccount:
    account: LocalAccount = Account.create()
    if keystore:
        runtime.keystore.add(account)
    runtime.chain.dev_fund(account.address, 10**20)
    return account


def _build(client: TestClient, runtime: Runtime) -> Consortium:
    founder = runtime.keystore.get(str(runtime.contracts.record.deployer))
    assert founder is not None
    admin = {"X-API-Key": _key(runtime, 1, founder.address, "ORG_ADMIN")}
    # Organisation 2 is admitted through the proposal flow; its keys are its own (not in our
    # keystore): it acts on the chain directly.
    org2_admin = _account(runtime, keystore=False)
    org2_id = add_organization(client, admin, "partner-" + secrets.token_hex(2), org2_admin.address)
    steward_account = _account(runtime, keystore=True)
    relayer_account = _account(runtime, keystore=True)
    world = Consortium(
        client=client,
        runtime=runtime,
        admin=admin,
        steward={"X-API-Key": _key(runtime, 1, steward_account.address, "DATA_STEWARD")},
        relayer={"X-API-Key": _key(runtime, 1, relayer_account.address, "RELAYER")},
        steward_account=steward_account,
        relayer_account=relayer_account,
        founder=founder,
        org2_admin=org2_admin,
        org2_steward=_account(runtime, keystore=False),
        org2_id=org2_id,
    )
    for role, account in (("DATA_STEWARD", steward_account), ("RELAYER", relayer_account)):
        granted = client.post(
            "/v1/roles/grants?wait=true",
            json={"role": role, "account": account.address},
            headers=admin,
        )
        assert granted.status_code == 200, granted.text
    _grant(world, "DATA_STEWARD", world.org2_steward, org2_admin)
    world.marketing = define_purpose(client, admin, runtime, MARKETING, "consent")
    assert world.marketing == purpose_id(MARKETING)

    created = client.post(
        "/v1/customers?wait=true", json={"email": "alice@example.com"}, headers=world.steward
    )
    assert created.status_code == 201, created.text
    world.alice = created.json()["customer_id"]
    typed = world.get(
        f"/v1/customers/{world.alice}/wallet/typed-data",
        world.steward,
        wallet=world.alice_wallet.address,
    )
    body = {
        "wallet": world.alice_wallet.address,
        "deadline": typed["message"]["deadline"],
        "signature": sign(world.alice_wallet, typed),
    }
    linked = world.post(f"/v1/customers/{world.alice}/wallet?wait=true", body, world.steward)
    assert linked.status_code == 200, linked.text
    return world


def _key(runtime: Runtime, org_id: int, account: str, role: str) -> str:
    with runtime.session_factory() as session:
        _record, plaintext = create_api_key(session, org_id=org_id, account=account, role=role)
        session.commit()
    return plaintext
