"""The OpenAPI document tells the truth: every error is documented as a problem document, every
route has a response model, and integers carry the bounds the gateway can hold (no 500s)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


@pytest.fixture
def openapi(client: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def _operations(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
    ]


def test_every_error_response_is_a_problem_document(openapi: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in openapi["components"]["schemas"]
    assert {"type", "title", "status"} <= set(
        openapi["components"]["schemas"]["Problem"]["required"]
    )
    for path, method, operation in _operations(openapi):
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        assert "500" in responses, where
        for status, response in responses.items():
            if int(status) >= 400 and not (path == "/readyz" and status == "503"):
                assert response["content"] == PROBLEM, f"{where} {status}"
        if operation.get("security"):
            assert {"401", "403"} <= set(responses), where
        if operation.get("parameters") or "requestBody" in operation:
            assert "422" in responses, where
        if "requestBody" in operation:
            assert {"400", "413", "415"} <= set(responses), where
        if any(p["in"] == "path" for p in operation.get("parameters", [])):
            assert "404" in responses, where
        if "202" in responses and any(p["name"] == "wait" for p in operation.get("parameters", [])):
            assert "200" in responses, f"{where}: a settled write answers 200"


def test_every_route_has_a_response_model(openapi: dict[str, Any]) -> None:
    for path, method, operation in _operations(openapi):
        for status, response in operation["responses"].items():
            if not status.startswith("2"):
                continue
            if status == "204":  # No Content: there is no body to describe
                assert "content" not in response, f"{method.upper()} {path} 204 has a body"
                continue
            schema = response["content"]["application/json"]["schema"]
            model = schema.get("items", schema) if schema.get("type") == "array" else schema
            assert "$ref" in model, f"{method.upper()} {path} {status} has no response model"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/consents/check", {"customer": "0x" + "ab" * 32, "purpose": "x", "org": 2**64 - 2}),
        ("/v1/marketing/audience", {"purpose": "x", "org": 2**64 - 2}),
        ("/v1/consents/typed-data", {"customer": "0x" + "ab" * 32, "purpose": "x", "org": 2**63}),
        ("/v1/roles", {"org": 2**63}),
        ("/v1/loyalty/0x" + "ab" * 32 + "/balance", {"as_of_block": 2**63}),
        ("/v1/loyalty/0x" + "ab" * 32 + "/history", {"from_block": 2**64}),
    ],
)
def test_integers_beyond_what_the_gateway_holds_are_422_not_500(
    client: TestClient, admin_headers: dict[str, str], path: str, params: dict[str, Any]
) -> None:
    response = client.get(path, params=params, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"].startswith("query.")


def test_a_signed_change_for_an_impossible_organisation_is_422(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    change = {
        "customer_id": "0x" + "ab" * 32,
        "purpose_id": "0x" + "cd" * 32,
        "org_id": 2**64 - 2,
        "granted": True,
        "nonce": 0,
        "deadline": 1,
        "signature": "0x" + "00" * 65,
    }
    response = client.post("/v1/consents", json=change, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert "body.SignedChangeIn.org_id" in [e["field"] for e in response.json()["errors"]]
