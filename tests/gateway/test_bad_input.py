"""Bad input on the write endpoints: a 4xx problem naming the field, and nothing queued."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_gateway.runtime import Runtime
from crm_gateway.store.models import Operation

VALID_ACCOUNT = "0x" + "11" * 20


def _assert_nothing_queued(runtime: Runtime) -> None:
    with runtime.session_factory() as session:
        assert session.query(Operation).count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "AGENT", "account": "0x1234"}, "body.account"),
        ({"role": "AGENT", "account": "0x" + "g" * 40}, "body.account"),
        ({"role": "NOT_A_ROLE", "account": VALID_ACCOUNT}, "body.role"),
        ({"role": 7, "account": VALID_ACCOUNT}, "body.role"),
        ({"role": "AGENT"}, "body.account"),
        ({"role": "AGENT", "account": VALID_ACCOUNT, "org": 2}, "body.org"),
    ],
)
def test_bad_role_grant_bodies_name_the_field(
    client: TestClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    body: dict[str, object],
    field: str,
) -> None:
    response = client.post("/v1/roles/grants", json=body, headers=admin_headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]
    _assert_nothing_queued(runtime)


def test_malformed_json_is_a_problem(
    client: TestClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    response = client.post(
        "/v1/roles/grants",
        content=b'{"role": "AGENT", "account": ',
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "JSON" in response.json()["detail"] or "JSON" in str(response.json().get("errors"))
    _assert_nothing_queued(runtime)


@pytest.mark.parametrize("key", [None, "", "crm_wrong", "crm_" + "x" * 43])
def test_missing_or_wrong_api_key_is_401(
    client: TestClient, runtime: Runtime, key: str | None
) -> None:
    headers = {} if key is None else {"X-API-Key": key}
    response = client.post(
        "/v1/roles/grants", json={"role": "AGENT", "account": VALID_ACCOUNT}, headers=headers
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("ApiKey")
    _assert_nothing_queued(runtime)


def test_bad_proposal_kind_and_threshold_are_named(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    unknown = client.post("/v1/orgs/proposals", json={"kind": "dissolve"}, headers=admin_headers)
    assert unknown.status_code == 422
    too_high = client.post(
        "/v1/orgs/proposals",
        json={"kind": "change_threshold", "threshold_bps": 10_001},
        headers=admin_headers,
    )
    assert too_high.status_code == 422
    assert "body.change_threshold.threshold_bps" in [
        e["field"] for e in too_high.json()["errors"]
    ] or any("threshold_bps" in e["field"] for e in too_high.json()["errors"])


def test_a_bad_idempotency_key_is_refused(
    client: TestClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    response = client.post(
        "/v1/roles/grants",
        json={"role": "AGENT", "account": VALID_ACCOUNT},
        headers={**admin_headers, "Idempotency-Key": "x" * 300},
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]
    _assert_nothing_queued(runtime)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(account=st.text(max_size=60))
def test_no_account_string_causes_a_server_error(
    client: TestClient, admin_headers: dict[str, str], account: str
) -> None:
    response = client.post(
        "/v1/roles/grants", json={"role": "AGENT", "account": account}, headers=admin_headers
    )
    assert response.status_code in {202, 403, 409, 422}, response.text
