"""A write the chain refuses leaves nothing behind; a write nobody here can sign is refused first.

The refusal is made real: the steward's role is revoked on-chain while the gateway's read model
(its indexer stopped) still says they hold it, so the gateway's pre-check lets the registration
through and the contract's simulation refuses it. The role is granted again and the very same
request must then succeed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from eth_account import Account
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from crm_gateway.chain.keystore import Keystore
from crm_gateway.chain.membership import sign_join
from crm_gateway.runtime import Runtime
from crm_gateway.services.access import AccessService, Role
from crm_gateway.store.models import BlindIndex, CustomerRecord, Operation
from tests.gateway.conftest import wait_until

BOB = {"given_name": "Bob", "email": "bob@example.com", "phone": "+44 20 7946 0111"}


def _count(runtime: Runtime, model: type[object]) -> int:
    with runtime.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_registration_the_chain_refuses_is_taken_back_and_the_same_request_then_works(
    client: TestClient,
    runtime: Runtime,
    admin_headers: dict[str, str],
    issue_key: Callable[[int, str, str], str],
    new_signer: Callable[[], str],
    support_purpose: str,
) -> None:
    account = new_signer()
    granted = client.post(
        "/v1/roles/grants?wait=true",
        json={"role": "DATA_STEWARD", "account": account},
        headers=admin_headers,
    )
    assert granted.status_code == 200, granted.text
    steward = {"X-API-Key": issue_key(1, account, "DATA_STEWARD")}
    wait_until(lambda: runtime.read_model.has_role("DATA_STEWARD", account))
    runtime.index_worker.stop()  # the read model keeps the grant
    revoked = client.post(
        "/v1/roles/revocations?wait=true",
        json={"role": "DATA_STEWARD", "account": account},
        headers=admin_headers,
    )
    assert revoked.status_code == 200, revoked.text

    refused = client.post("/v1/customers?wait=true", json=BOB, headers=steward)
    assert refused.status_code == 422, refused.text
    customer_id = refused.json().get("customer_id", None)
    # Nothing of the request stays off-chain: no sealed record, no blind index.
    assert _count(runtime, CustomerRecord) == 0
    assert _count(runtime, BlindIndex) == 0
    if customer_id is not None:
        assert client.get(f"/v1/customers/{customer_id}/verify", headers=steward).status_code == 404

    granted = client.post(
        "/v1/roles/grants?wait=true",
        json={"role": "DATA_STEWARD", "account": account},
        headers=admin_headers,
    )
    assert granted.status_code == 200, granted.text
    again = client.post("/v1/customers?wait=true", json=BOB, headers=steward)
    assert again.status_code == 201, again.text
    created = again.json()
    assert created["operation"]["status"] == "confirmed"
    verified = client.get(f"/v1/customers/{created['customer_id']}/verify", headers=steward)
    assert verified.json()["intact"] is True, verified.text


def test_a_write_whose_signer_has_no_key_here_is_refused_before_anything_is_written(
    client: TestClient,
    runtime: Runtime,
    admin_headers: dict[str, str],
    issue_key: Callable[[int, str, str], str],
) -> None:
    outsider = Account.create()  # holds the role on-chain, but its key is not in the keystore
    runtime.chain.dev_fund(outsider.address, 10**20)
    deadline = int(time.time()) + 600  # it joins with its own wallet's signature
    typed = AccessService(runtime.contracts).join_typed_data(
        outsider.address, 1, Role.ORG_ADMIN, deadline
    )
    granted = client.post(
        "/v1/roles/grants?wait=true",
        json={
            "role": "ORG_ADMIN",
            "account": outsider.address,
            "deadline": deadline,
            "signature": sign_join(outsider, typed),
        },
        headers=admin_headers,
    )
    assert granted.status_code == 200, granted.text
    key = {"X-API-Key": issue_key(1, outsider.address, "ORG_ADMIN")}
    before = _count(runtime, Operation)
    agent = runtime.keystore.add(Account.create()).address  # the gateway signs its join
    body = {"role": "AGENT", "account": agent}

    refused = client.post("/v1/roles/grants", json=body, headers=key)
    assert refused.status_code == 503, refused.text
    problem = refused.json()
    assert problem["type"].endswith("signer-unavailable")
    assert outsider.address in problem["detail"]
    assert _count(runtime, Operation) == before  # nothing queued

    # The key is added to the keystore directory while the gateway runs (as another process
    # would): the same request signs at once.
    Keystore(
        runtime.keystore.directory,
        runtime.settings.keystore_password.get_secret_value(),
        scrypt_n=runtime.settings.keystore_scrypt_n,
    ).add(outsider)
    wait_until(lambda: runtime.read_model.has_role("ORG_ADMIN", outsider.address))
    accepted = client.post("/v1/roles/grants?wait=true", json=body, headers=key)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "confirmed"
