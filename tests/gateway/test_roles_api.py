"""Role grants through the API: queued, signed by the caller's account, confirmed on-chain."""

from __future__ import annotations

import time
from collections.abc import Callable

from eth_account import Account
from fastapi.testclient import TestClient

from crm_gateway.runtime import Runtime
from crm_gateway.services.access import AccessService, Role
from crm_gateway.store.models import ChainTransaction
from tests.gateway.conftest import add_organization, events, wait_for


def test_grant_answers_202_then_confirms_on_chain(
    client: TestClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    """An account whose key the gateway does not hold joins with its own wallet's signature."""
    wallet = Account.create()
    steward = wallet.address
    refused = client.post(
        "/v1/roles/grants", json={"role": "DATA_STEWARD", "account": steward}, headers=admin_headers
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["name"] == "MembershipNotAccepted"
    deadline = int(time.time()) + 600
    typed = AccessService(runtime.contracts).join_typed_data(
        steward, 1, Role.DATA_STEWARD, deadline
    )
    signature = Account.sign_typed_data(wallet.key, full_message=typed).signature
    body = {
        "role": "DATA_STEWARD",
        "account": steward,
        "deadline": deadline,
        "signature": "0x" + bytes(signature).hex(),
    }
    response = client.post("/v1/roles/grants", json=body, headers=admin_headers)
    assert response.status_code == 202, response.text
    operation = response.json()
    assert response.headers["Location"] == f"/v1/operations/{operation['id']}"
    assert operation["status"] in {"pending", "submitted", "confirmed"}

    settled = wait_for(client, admin_headers, operation["id"])
    assert settled["status"] == "confirmed"
    assert settled["tx_hash"].startswith("0x")
    assert settled["block_number"] > 0
    granted = events(settled, "RoleGranted")
    assert granted == [
        {
            "role": "0x" + Role.DATA_STEWARD.role_id.hex(),
            "account": steward,
            "sender": granted[0]["sender"],
        }
    ]
    assert events(settled, "MemberAdded") == [{"orgId": 1, "account": steward}]
    assert AccessService(runtime.contracts).has_role(Role.DATA_STEWARD, steward)

    roles = client.get(f"/v1/roles/{steward}", headers=admin_headers).json()
    assert roles == {"account": steward, "organization_id": 1, "roles": ["DATA_STEWARD"]}


def test_wait_true_answers_with_the_receipt(
    client: TestClient, admin_headers: dict[str, str], new_signer: Callable[[], str]
) -> None:
    agent = new_signer()
    response = client.post(
        "/v1/roles/grants?wait=true",
        json={"role": "AGENT", "account": agent},
        headers=admin_headers,
    )
    assert response.status_code == 200
    assert response.json()["status"] == "confirmed"
    assert response.json()["gas_used"] > 0


def test_idempotency_key_replays_the_same_operation_and_writes_once(
    client: TestClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    new_signer: Callable[[], str],
) -> None:
    body = {"role": "MARKETER", "account": new_signer()}
    headers = {**admin_headers, "Idempotency-Key": "grant-marketer-1"}
    first = client.post("/v1/roles/grants?wait=true", json=body, headers=headers)
    again = client.post("/v1/roles/grants?wait=true", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    with runtime.session_factory() as session:
        assert session.query(ChainTransaction).count() == 1

    conflicting = client.post("/v1/roles/grants", json={**body, "role": "AGENT"}, headers=headers)
    assert conflicting.status_code == 409
    assert conflicting.headers["content-type"] == "application/problem+json"
    assert conflicting.json()["operation_id"] == first.json()["id"]


def test_a_key_without_org_admin_is_refused_before_anything_is_queued(
    client: TestClient,
    admin_headers: dict[str, str],
    issue_key: Callable[[int, str, str], str],
    runtime: Runtime,
    new_signer: Callable[[], str],
) -> None:
    steward = new_signer()
    client.post(
        "/v1/roles/grants?wait=true",
        json={"role": "DATA_STEWARD", "account": steward},
        headers=admin_headers,
    )
    steward_headers = {"X-API-Key": issue_key(1, steward, "DATA_STEWARD")}
    response = client.post(
        "/v1/roles/grants",
        json={"role": "AGENT", "account": new_signer()},
        headers=steward_headers,
    )
    assert response.status_code == 403
    assert response.json()["required_role"] == "ORG_ADMIN"
    with runtime.session_factory() as session:
        assert session.query(ChainTransaction).count() == 1


def test_granting_to_another_organisations_account_is_refused(
    client: TestClient, admin_headers: dict[str, str], new_signer: Callable[[], str]
) -> None:
    other_admin = new_signer()
    add_organization(client, admin_headers, "partner-merchant", other_admin)
    response = client.post(
        "/v1/roles/grants", json={"role": "AGENT", "account": other_admin}, headers=admin_headers
    )
    assert response.status_code == 422
    assert response.json()["error"]["name"] == "AccountInOtherOrganization"


def test_consortium_admin_is_not_delegable(
    client: TestClient, admin_headers: dict[str, str], new_signer: Callable[[], str]
) -> None:
    response = client.post(
        "/v1/roles/grants",
        json={"role": "CONSORTIUM_ADMIN", "account": new_signer()},
        headers=admin_headers,
    )
    assert response.status_code == 422
    assert response.json()["error"]["name"] == "RoleNotDelegable"


def test_a_contract_refusal_is_decoded_into_the_operation(
    client: TestClient, admin_headers: dict[str, str], founder_admin: str
) -> None:
    # Revoking the founding organisation's only admin passes the gateway's checks; the
    # contract refuses it, and the operation names the custom error.
    response = client.post(
        "/v1/roles/revocations",
        json={"role": "ORG_ADMIN", "account": founder_admin},
        headers=admin_headers,
    )
    assert response.status_code == 202
    settled = wait_for(client, admin_headers, response.json()["id"])
    assert settled["status"] == "failed"
    assert settled["error"] == {"name": "LastOrganizationAdmin", "args": {"orgId": 1}}

    waited = client.post(
        "/v1/roles/revocations?wait=true",
        json={"role": "ORG_ADMIN", "account": founder_admin},
        headers=admin_headers,
    )
    assert waited.status_code == 422
    assert waited.headers["content-type"] == "application/problem+json"
    assert waited.json()["error"]["name"] == "LastOrganizationAdmin"
    assert waited.json()["operation_id"]


def test_role_listing_filters_by_organisation_and_role(
    client: TestClient,
    admin_headers: dict[str, str],
    founder_admin: str,
    new_signer: Callable[[], str],
) -> None:
    auditor = new_signer()
    client.post(
        "/v1/roles/grants?wait=true",
        json={"role": "AUDITOR", "account": auditor},
        headers=admin_headers,
    )
    listing = client.get("/v1/roles?org=1&role=AUDITOR", headers=admin_headers).json()
    assert listing == [
        {"account": auditor, "role": "AUDITOR", "organization_id": 1, "active": True}
    ]
    admins = client.get("/v1/roles?role=ORG_ADMIN", headers=admin_headers).json()
    assert [h["account"] for h in admins] == [founder_admin]


def test_operations_of_another_organisation_are_invisible(
    client: TestClient,
    admin_headers: dict[str, str],
    issue_key: Callable[[int, str, str], str],
    new_signer: Callable[[], str],
) -> None:
    other_admin = new_signer()
    other_org = add_organization(client, admin_headers, "service-provider", other_admin)
    operation = client.post(
        "/v1/roles/grants",
        json={"role": "AGENT", "account": new_signer()},
        headers=admin_headers,
    ).json()
    # This gateway serves organisation 1: a key of another organisation is not in force here.
    other_headers = {"X-API-Key": issue_key(other_org, other_admin, "ORG_ADMIN")}
    refused = client.get(f"/v1/operations/{operation['id']}", headers=other_headers)
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/api-key-not-in-force")
    assert client.get(f"/v1/operations/{operation['id']}", headers=admin_headers).status_code == 200
