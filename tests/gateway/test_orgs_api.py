"""Organisations through the API: multi-organisation approval, refusals named by custom error."""

from __future__ import annotations

from collections.abc import Callable

from eth_account import Account
from fastapi.testclient import TestClient

from tests.gateway.conftest import add_organization, events


def test_founding_organisation_is_bootstrapped_with_the_deployer_as_admin(
    client: TestClient, admin_headers: dict[str, str], founder_admin: str
) -> None:
    orgs = client.get("/v1/orgs", headers=admin_headers).json()
    assert orgs == [
        {
            "id": 1,
            "name": "founder",
            "admin": founder_admin,
            "active": True,
            "members": [founder_admin],
        }
    ]


def test_adding_a_second_organisation_then_a_third_needs_both(
    client: TestClient,
    admin_headers: dict[str, str],
    issue_key: Callable[[int, str, str], str],
    new_signer: Callable[[], str],
    gateway_of: Callable[[int], TestClient],
) -> None:
    merchant_admin = new_signer()
    merchant = add_organization(client, admin_headers, "merchant", merchant_admin)
    merchant_headers = {"X-API-Key": issue_key(merchant, merchant_admin, "ORG_ADMIN")}

    proposed = client.post(
        "/v1/orgs/proposals?wait=true",
        json={"kind": "add_organization", "name": "provider", "admin": Account.create().address},
        headers=admin_headers,
    ).json()
    proposal_id = events(proposed, "ProposalCreated")[0]["proposalId"]
    proposal = client.get(f"/v1/orgs/proposals/{proposal_id}", headers=admin_headers).json()
    assert proposal["approvals"] == 1
    assert proposal["requiredApprovals"] == 2

    below = client.post(
        f"/v1/orgs/proposals/{proposal_id}/execution?wait=true", headers=admin_headers
    )
    assert below.status_code == 422
    assert below.json()["error"] == {
        "name": "BelowThreshold",
        "args": {"proposalId": proposal_id, "approvals": 1, "required": 2},
    }

    replay = client.post(
        f"/v1/orgs/proposals/{proposal_id}/approvals?wait=true", headers=admin_headers
    )
    assert replay.status_code == 422
    assert replay.json()["error"] == {
        "name": "AlreadyApproved",
        "args": {"proposalId": proposal_id, "orgId": 1},
    }

    merchant_gateway = gateway_of(merchant)
    approved = merchant_gateway.post(
        f"/v1/orgs/proposals/{proposal_id}/approvals?wait=true", headers=merchant_headers
    )
    assert approved.status_code == 200
    assert events(approved.json(), "ProposalApproved")[0]["approvals"] == 2
    executed = merchant_gateway.post(
        f"/v1/orgs/proposals/{proposal_id}/execution?wait=true", headers=merchant_headers
    )
    assert executed.status_code == 200
    assert events(executed.json(), "OrganizationAdded")[0]["name"] == "provider"
    assert [o["name"] for o in client.get("/v1/orgs", headers=admin_headers).json()] == [
        "founder",
        "merchant",
        "provider",
    ]


def test_suspending_an_organisation_takes_its_roles_away(
    client: TestClient,
    admin_headers: dict[str, str],
    issue_key: Callable[[int, str, str], str],
    new_signer: Callable[[], str],
    gateway_of: Callable[[int], TestClient],
) -> None:
    partner_admin = new_signer()
    partner = add_organization(client, admin_headers, "partner", partner_admin)
    partner_headers = {"X-API-Key": issue_key(partner, partner_admin, "ORG_ADMIN")}
    proposed = client.post(
        "/v1/orgs/proposals?wait=true",
        json={"kind": "suspend_organization", "organization_id": partner},
        headers=admin_headers,
    ).json()
    proposal_id = events(proposed, "ProposalCreated")[0]["proposalId"]
    partner_gateway = gateway_of(partner)
    partner_gateway.post(
        f"/v1/orgs/proposals/{proposal_id}/approvals?wait=true", headers=partner_headers
    )
    executed = client.post(
        f"/v1/orgs/proposals/{proposal_id}/execution?wait=true", headers=admin_headers
    )
    assert events(executed.json(), "OrganizationSuspended") == [{"orgId": partner}]

    assert client.get(f"/v1/orgs/{partner}", headers=admin_headers).json()["active"] is False
    refused = partner_gateway.post(
        "/v1/roles/grants",
        json={"role": "AGENT", "account": Account.create().address},
        headers=partner_headers,
    )
    assert refused.status_code == 403


def test_unknown_organisation_and_proposal_are_404(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    for path in ("/v1/orgs/99", "/v1/orgs/proposals/99"):
        response = client.get(path, headers=admin_headers)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
    approve = client.post("/v1/orgs/proposals/99/approvals", headers=admin_headers)
    assert approve.status_code == 404


def test_readyz_names_chain_contracts_and_database(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["chain"]["kind"] == "embedded"
    assert body["chain"]["latest_block"] >= 1
    assert body["checks"] == {"chain": "ok", "contracts": "ok", "database": "ok"}
    assert set(body["contracts"]) == {
        "Consortium",
        "CustomerRegistry",
        "PurposeRegistry",
        "ConsentLedger",
        "LoyaltyPoints",
        "AuditAnchor",
    }
    assert client.get("/healthz").json() == {"status": "ok"}


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/orgs", "/v1/roles/grants", "/v1/operations/{operation_id}", "/readyz"} <= set(
        paths
    )
