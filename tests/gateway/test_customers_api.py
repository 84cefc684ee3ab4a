"""Customers through the API on the embedded chain: sealed off-chain, committed on-chain."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from sqlalchemy import select

from crm_gateway.runtime import Runtime
from crm_gateway.store.models import AccessLogEntry, BlindIndex, CustomerRecord
from tests.gateway.conftest import DATABASES

ALICE = {
    "given_name": "Alice",
    "family_name": "Liddell",
    "email": "  Alice@Example.COM ",
    "phone": "020 7946 0958",
    "birth_date": "1990-05-04",
}


@pytest.fixture(params=DATABASES)
def gateway_database(request: pytest.FixtureRequest) -> str:
    """Every test here runs on SQLite and on the machine's PostgreSQL."""
    return str(request.param)


@pytest.fixture
def steward(role_key: Callable[[str], dict[str, str]], support_purpose: str) -> dict[str, str]:
    return role_key("DATA_STEWARD")


def _create(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/customers?wait=true", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_create_read_verify(client: TestClient, steward: dict[str, str], runtime: Runtime) -> None:
    created = _create(client, steward, ALICE)
    customer_id = created["customer_id"]
    assert created["operation"]["status"] == "confirmed"

    read = client.get(f"/v1/customers/{customer_id}?purpose=support", headers=steward)
    assert read.status_code == 200, read.text
    profile = read.json()["profile"]
    assert profile["email"] == "Alice@example.com"  # local part kept; the index ignores case
    assert profile["phone"] == "+442079460958"
    assert read.json()["version"] == 1

    verified = client.get(f"/v1/customers/{customer_id}/verify", headers=steward).json()
    assert verified["intact"] is True
    assert verified["version"] == 1
    assert verified["block"] > 0

    registry = runtime.contracts["CustomerRegistry"]
    status, _at, _wallet, holders = registry.functions.customer(
        bytes.fromhex(customer_id[2:])
    ).call()
    assert (status, holders) == (1, 1)


def test_a_national_phone_is_read_in_the_address_country_through_the_api(
    client: TestClient, steward: dict[str, str]
) -> None:
    """The rule of `CustomerProfile` itself, so the API body and the importer agree."""
    address = {"lines": ["1 Main Street"], "city": "New York", "country": "US"}
    body = {"email": "nat@example.com", "phone": "(212) 424-1106", "postal_address": address}
    created = _create(client, steward, body)
    read = client.get(f"/v1/customers/{created['customer_id']}?purpose=support", headers=steward)
    assert read.json()["profile"]["phone"] == "+12124241106"
    # Without the address the development default region (GB) decides: not a GB number.
    refused = client.post(
        "/v1/customers", json={"email": "x@example.com", "phone": "(212) 424-1106"}, headers=steward
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "body.phone"


def test_duplicates_by_email_or_phone_are_409_with_the_existing_id(
    client: TestClient, steward: dict[str, str]
) -> None:
    customer_id = _create(client, steward, ALICE)["customer_id"]
    for duplicate in (
        {"email": "alice@example.com"},
        {"email": "someone@else.org", "phone": "+44 20 7946 0958"},
    ):
        response = client.post("/v1/customers", json=duplicate, headers=steward)
        assert response.status_code == 409
        assert response.json()["customer_id"] == customer_id


def _race(client: TestClient, requests: list[Callable[[], Any]]) -> list[Any]:
    """Send the requests from as many threads at once; their responses, in order."""
    barrier = threading.Barrier(len(requests))
    responses: list[Any] = [None] * len(requests)

    def send(i: int) -> None:
        barrier.wait()
        responses[i] = requests[i]()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return responses


def test_concurrent_registrations_of_one_person_make_one_record_and_409s(
    client: TestClient, steward: dict[str, str], runtime: Runtime
) -> None:
    """On PostgreSQL both requests can pass the conflict check; the loser must still get a 409."""
    body = {"email": "race@example.com", "given_name": "Rae"}
    responses = _race(
        client, [lambda: client.post("/v1/customers", json=body, headers=steward)] * 8
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] + [409] * 7, [r.text for r in responses]
    [winner] = [r.json()["customer_id"] for r in responses if r.status_code == 202]
    assert {r.json()["customer_id"] for r in responses if r.status_code == 409} == {winner}
    with runtime.session_factory() as session:
        assert [r.customer_id for r in session.scalars(select(CustomerRecord))] == [winner]


def test_concurrent_updates_to_one_phone_let_one_win(
    client: TestClient, steward: dict[str, str], runtime: Runtime
) -> None:
    ids = [
        _create(client, steward, {"email": f"p{n}@example.com"})["customer_id"] for n in range(4)
    ]
    patch = {"phone": "+44 20 7946 0111"}
    responses = _race(
        client,
        [
            (lambda c=c: client.patch(f"/v1/customers/{c}", json=patch, headers=steward))
            for c in ids
        ],
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] + [409] * 3, [r.text for r in responses]
    winner = ids[[r.status_code for r in responses].index(202)]
    assert all(r.json()["customer_id"] == winner for r in responses if r.status_code == 409)
    with runtime.session_factory() as session:
        owners = session.scalars(select(BlindIndex.customer_id).where(BlindIndex.kind == "phone"))
        assert list(owners) == [winner]


def test_lookup_by_email_and_phone(client: TestClient, steward: dict[str, str]) -> None:
    customer_id = _create(client, steward, ALICE)["customer_id"]
    by_email = client.get("/v1/customers", params={"email": "ALICE@example.com "}, headers=steward)
    assert by_email.json() == {"customer_ids": [customer_id]}
    by_phone = client.get("/v1/customers", params={"phone": "+442079460958"}, headers=steward)
    assert by_phone.json() == {"customer_ids": [customer_id]}
    nobody = client.get("/v1/customers", params={"email": "nobody@example.com"}, headers=steward)
    assert nobody.json() == {"customer_ids": []}


def test_patch_makes_a_new_version_and_commitment(
    client: TestClient, steward: dict[str, str], runtime: Runtime
) -> None:
    customer_id = _create(client, steward, ALICE)["customer_id"]
    patched = client.patch(
        f"/v1/customers/{customer_id}?wait=true",
        json={"family_name": "Hargreaves"},
        headers=steward,
    )
    assert patched.status_code == 200, patched.text
    read = client.get(f"/v1/customers/{customer_id}?purpose=support", headers=steward).json()
    assert read["version"] == 2
    assert read["profile"]["family_name"] == "Hargreaves"
    verified = client.get(f"/v1/customers/{customer_id}/verify", headers=steward).json()
    assert verified == {"intact": True, "version": 2, "block": verified["block"], "reason": None}


def test_tampering_is_detected_by_verify(
    client: TestClient, steward: dict[str, str], runtime: Runtime
) -> None:
    first = _create(client, steward, ALICE)["customer_id"]
    second = _create(client, steward, {"email": "bob@example.com", "given_name": "Bob"})[
        "customer_id"
    ]
    with runtime.session_factory() as session:
        a = session.get(CustomerRecord, first)
        b = session.get(CustomerRecord, second)
        assert a is not None
        assert b is not None
        a.ciphertext, b.ciphertext = b.ciphertext, a.ciphertext
        a.nonce, b.nonce = b.nonce, a.nonce
        a.wrapped_key, b.wrapped_key = b.wrapped_key, a.wrapped_key
        session.commit()
    for customer_id in (first, second):
        verified = client.get(f"/v1/customers/{customer_id}/verify", headers=steward).json()
        assert verified["intact"] is False
        assert "authenticate" in verified["reason"]
        read = client.get(f"/v1/customers/{customer_id}?purpose=support", headers=steward)
        assert read.status_code >= 400


def test_an_edited_commitment_is_detected(
    client: TestClient, steward: dict[str, str], runtime: Runtime
) -> None:
    customer_id = _create(client, steward, ALICE)["customer_id"]
    with runtime.session_factory() as session:
        record = session.get(CustomerRecord, customer_id)
        assert record is not None
        record.commitment = "0x" + "ab" * 32
        session.commit()
    verified = client.get(f"/v1/customers/{customer_id}/verify", headers=steward).json()
    assert verified["intact"] is False


def test_reads_need_steward_or_agent_and_every_attempt_is_logged(
    client: TestClient,
    steward: dict[str, str],
    role_key: Callable[[str], dict[str, str]],
    runtime: Runtime,
) -> None:
    customer_id = _create(client, steward, ALICE)["customer_id"]
    agent = role_key("AGENT")
    marketer = role_key("MARKETER")
    assert (
        client.get(f"/v1/customers/{customer_id}?purpose=support", headers=agent).status_code == 200
    )
    refused = client.get(f"/v1/customers/{customer_id}?purpose=newsletter", headers=marketer)
    assert refused.status_code == 403
    assert (
        client.get(f"/v1/customers/{customer_id}", headers=agent).status_code == 422
    )  # no purpose
    with runtime.session_factory() as session:
        entries = session.scalars(
            select(AccessLogEntry)
            .where(AccessLogEntry.action == "read")
            .order_by(AccessLogEntry.seq)
        ).all()
        assert [(e.purpose, e.decision.value) for e in entries] == [
            ("support", "allowed"),
            ("newsletter", "refused"),
        ]


def test_erasure_shreds_keys_answers_410_and_the_person_can_return(
    client: TestClient, steward: dict[str, str], runtime: Runtime
) -> None:
    customer_id = _create(client, steward, ALICE)["customer_id"]
    erased = client.delete(f"/v1/customers/{customer_id}?wait=true", headers=steward)
    assert erased.status_code == 200, erased.text
    assert (
        client.get(f"/v1/customers/{customer_id}?purpose=support", headers=steward).status_code
        == 410
    )
    with runtime.session_factory() as session:
        record = session.get(CustomerRecord, customer_id)
        assert record is not None
        assert (record.ciphertext, record.nonce, record.wrapped_key, record.kek_id) == (None,) * 4
        assert session.scalars(select(BlindIndex)).all() == []
    registry = runtime.contracts["CustomerRegistry"]
    assert registry.functions.customer(bytes.fromhex(customer_id[2:])).call()[0] == 2

    again = _create(client, steward, ALICE)
    assert again["customer_id"] != customer_id


def test_export_has_profile_chain_state_and_access_log(
    client: TestClient, steward: dict[str, str]
) -> None:
    customer_id = _create(client, steward, ALICE)["customer_id"]
    client.get(f"/v1/customers/{customer_id}?purpose=support", headers=steward)
    export = client.get(f"/v1/customers/{customer_id}/export", headers=steward).json()
    assert export["profile"]["given_name"] == "Alice"
    assert export["on_chain"]["status"] == "active"
    assert export["on_chain"]["holders"] == [1]
    assert [e["action"] for e in export["access_log"]][:2] == ["create", "read"]


def test_wallet_link_with_the_wallets_own_signature(
    client: TestClient, steward: dict[str, str], runtime: Runtime
) -> None:
    customer_id = _create(client, steward, ALICE)["customer_id"]
    wallet = Account.create()
    typed = client.get(
        f"/v1/customers/{customer_id}/wallet/typed-data",
        params={"wallet": wallet.address},
        headers=steward,
    ).json()
    signature = Account.sign_typed_data(wallet.key, full_message=typed).signature.to_0x_hex()
    body = {
        "wallet": wallet.address,
        "deadline": typed["message"]["deadline"],
        "signature": signature,
    }

    impostor = Account.create()
    forged = Account.sign_typed_data(impostor.key, full_message=typed).signature.to_0x_hex()
    refused = client.post(  # the contract decides (simulated before anything is sent)
        f"/v1/customers/{customer_id}/wallet?wait=true",
        json={**body, "signature": forged},
        headers=steward,
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["name"] == "InvalidWalletSignature"

    linked = client.post(
        f"/v1/customers/{customer_id}/wallet?wait=true", json=body, headers=steward
    )
    assert linked.status_code == 200, linked.text
    registry = runtime.contracts["CustomerRegistry"]
    assert registry.functions.customerOfWallet(wallet.address).call() == bytes.fromhex(
        customer_id[2:]
    )

    replay = client.post(
        f"/v1/customers/{customer_id}/wallet?wait=true", json=body, headers=steward
    )
    assert replay.status_code == 422  # a linked wallet is never re-linked (refused up front)
    assert replay.json()["error"]["name"] == "WalletAlreadyLinked"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email"}, "body.email"),
        ({"email": "a@example.com", "phone": "12"}, "body.phone"),
        ({"email": "a@example.com", "birth_date": "1990-13-01"}, "body.birth_date"),
        ({"email": "a@example.com", "given_name": "x" * 101}, "body.given_name"),
        ({"email": "a@example.com", "shoe_size": 42}, "body.shoe_size"),
        ({"given_name": "No Email"}, "body.email"),
    ],
)
def test_bad_profiles_name_the_field_and_store_nothing(
    client: TestClient, steward: dict[str, str], runtime: Runtime, body: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/customers", json=body, headers=steward)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]
    with runtime.session_factory() as session:
        assert session.scalars(select(CustomerRecord)).all() == []
