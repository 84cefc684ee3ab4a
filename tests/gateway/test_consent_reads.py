"""Consent history and receipts only for the roles that need them and only about the caller's
organisation; marketing audiences only for a MARKETER of the organisation asked about."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.gateway.conftest import add_organization, wait_until
from tests.gateway.test_consents_api import MARKETING, World
from tests.gateway.test_consents_api import world as world


@pytest.fixture
def second_org(
    world: World,
    issue_key: Callable[[int, str, str], str],
    new_signer: Callable[[], str],
    gateway_of: Callable[[int], TestClient],
) -> tuple[TestClient, Callable[[str], dict[str, str]]]:
    """The gateway of a second organisation (admitted by proposal; a key is in force only at its
    own organisation's gateway), and keys of its accounts holding `role` there."""
    admin = new_signer()
    org_id = add_organization(world.client, world.admin, "second", admin)
    admin_headers = {"X-API-Key": issue_key(org_id, admin, "ORG_ADMIN")}
    gateway = gateway_of(org_id)

    def make(role: str) -> dict[str, str]:
        account = new_signer()
        granted = gateway.post(
            "/v1/roles/grants?wait=true",
            json={"role": role, "account": account},
            headers=admin_headers,
        )
        assert granted.status_code == 200, granted.text
        return {"X-API-Key": issue_key(org_id, account, role)}

    return gateway, make


def _history(world: World, headers: dict[str, str]) -> list[dict[str, object]]:
    response = world.client.get(f"/v1/consents/{world.customer}", headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["history"])


def _granted(world: World) -> str:
    world.relay(world.signed(world.typed(granted=True)))
    wait_until(lambda: len(_history(world, world.steward)) == 1)
    return str(_history(world, world.steward)[0]["receipt_id"])


def test_history_and_receipts_need_a_steward_agent_or_auditor(
    world: World, role_key: Callable[[str], dict[str, str]]
) -> None:
    receipt = _granted(world)
    for role in ("AGENT", "AUDITOR"):
        assert len(_history(world, role_key(role))) == 1
    for headers in (world.relayer, world.marketer, world.admin):
        for path in (
            f"/v1/consents/{world.customer}",
            f"/v1/consents/{world.customer}/receipts/{receipt}",
        ):
            refused = world.client.get(path, headers=headers)
            assert refused.status_code == 403, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["required_roles"] == ["DATA_STEWARD", "AGENT", "AUDITOR"]


def test_another_organisation_sees_none_of_this_ones_consents(
    world: World, second_org: tuple[TestClient, Callable[[str], dict[str, str]]]
) -> None:
    receipt = _granted(world)
    gateway, keys = second_org
    other_steward = keys("DATA_STEWARD")
    # At this organisation's gateway another organisation's key is not in force at all ...
    assert (
        world.client.get(f"/v1/consents/{world.customer}", headers=other_steward).status_code == 403
    )
    # ... and at its own, the same chain's consents of this organisation are not shown.
    body = gateway.get(f"/v1/consents/{world.customer}", headers=other_steward).json()
    assert body["history"] == []
    assert body["current"] == []
    hidden = gateway.get(f"/v1/consents/{world.customer}/receipts/{receipt}", headers=other_steward)
    assert hidden.status_code == 404
    mine = world.client.get(
        f"/v1/consents/{world.customer}/receipts/{receipt}", headers=world.steward
    )
    assert mine.status_code == 200


def test_the_audience_is_for_a_marketer_of_that_organisation(
    world: World, second_org: tuple[TestClient, Callable[[str], dict[str, str]]]
) -> None:
    _granted(world)
    params = {"purpose": MARKETING, "org": 1}
    allowed = world.client.get("/v1/marketing/audience", params=params, headers=world.marketer)
    assert allowed.status_code == 200
    assert world.customer in allowed.json()["customer_ids"]
    for headers in (world.relayer, world.steward, world.admin):
        refused = world.client.get("/v1/marketing/audience", params=params, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["required_roles"] == ["MARKETER"]
    gateway, keys = second_org
    other_marketer = keys("MARKETER")
    elsewhere = gateway.get("/v1/marketing/audience", params=params, headers=other_marketer)
    assert elsewhere.status_code == 403
    assert "may list the audience of organisation 2 only, not of 1" in elsewhere.json()["detail"]
    own = gateway.get(
        "/v1/marketing/audience", params={"purpose": MARKETING, "org": 2}, headers=other_marketer
    )
    assert own.status_code == 200
    assert own.json()["customer_ids"] == []
