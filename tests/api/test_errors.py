"""Problem responses, the API key dependency and the shared field types, on a small test app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, TypeAdapter, ValidationError

from crm_gateway.api.deps import CallerDep, IdempotencyKeyDep, SessionDep, SettingsDep
from crm_gateway.api.errors import (
    PROBLEM_JSON,
    Conflict,
    Forbidden,
    NotFound,
    ProblemError,
    install_problem_handlers,
    problem_responses,
)
from crm_gateway.api.schemas import Bytes32Hex, EthAddress, StrictModel
from crm_gateway.config import Settings
from crm_gateway.security.apikeys import AnyKeyAccount, create_api_key, revoke
from crm_gateway.store.db import (
    make_engine,
    make_session_factory,
    session_scope,
    upgrade_database,
)

ACCOUNT = "0x52908400098527886E0F7030069857D2E4169EE7"
BASE = "https://crm-chaincode.dev/problems/"

hypothesis_settings = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


class GrantIn(StrictModel):
    account: EthAddress
    role: Bytes32Hex
    amount: int = 0
    tags: list[str] = Field(default_factory=list)


class ItemsIn(StrictModel):
    items: list[GrantIn]


def build_app(settings_: Settings, session_factory: Any) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings_
    app.state.session_factory = session_factory
    app.state.key_check = AnyKeyAccount()  # no chain here: what is tested is error rendering
    install_problem_handlers(app)

    @app.post("/grants", responses=problem_responses(400, 401, 415, 422))
    def grant(
        body: GrantIn, caller: CallerDep, key: IdempotencyKeyDep, session: SessionDep
    ) -> dict[str, Any]:
        return {
            "account": body.account,
            "role": body.role,
            "caller": {"org_id": caller.org_id, "account": caller.account, "role": caller.role},
            "idempotency_key": key,
            "session_active": session.is_active,
        }

    @app.post("/items")
    def items(body: ItemsIn) -> int:
        return len(body.items)

    @app.get("/settings")
    def show_settings(s: SettingsDep) -> str:
        return s.database_url

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("password=hunter2 at /srv/secret.py line 7")

    @app.get("/conflict")
    def conflict() -> None:
        raise Conflict("idempotency key reused with a different body", operation_id="op-1")

    @app.get("/forbidden")
    def forbidden() -> None:
        raise Forbidden("caller lacks CRM_OPERATOR_ROLE", slug="missing-role", role="CRM_OPERATOR")

    @app.get("/missing")
    def missing() -> None:
        raise NotFound("no operation op-9", instance="/v1/operations/op-9")

    @app.get("/internal")
    def internal() -> None:
        raise ProblemError("the chain node is gone")

    return app


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, str]]:
    path: Path = tmp_path_factory.mktemp("api") / "crm.db"
    url = f"sqlite:///{path}"
    upgrade_database(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        _, key = create_api_key(session, 3, ACCOUNT.lower(), "operator", "test app")
        revoked_row, revoked_key = create_api_key(session, 3, ACCOUNT, "operator")
        revoke(session, revoked_row.id)
    app = build_app(Settings(database_url=url), factory)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, key, revoked_key
    engine.dispose()


@pytest.fixture
def client(setup: tuple[TestClient, str, str]) -> TestClient:
    return setup[0]


@pytest.fixture
def key(setup: tuple[TestClient, str, str]) -> str:
    return setup[1]


def body(**overrides: Any) -> dict[str, Any]:
    return {"account": ACCOUNT.lower(), "role": "0x" + "AB" * 32, **overrides}


def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    doc: dict[str, Any] = response.json()
    assert doc["type"] == BASE + slug
    assert doc["status"] == status
    assert isinstance(doc["title"], str)
    assert doc["title"]
    assert isinstance(doc["detail"], str)
    assert doc["detail"]
    assert doc["instance"].startswith("/")
    return doc


def fields(doc: dict[str, Any]) -> dict[str, str]:
    return {error["field"]: error["message"] for error in doc["errors"]}


def test_valid_request_passes_and_normalises(client: TestClient, key: str) -> None:
    response = client.post(
        "/grants", json=body(), headers={"X-API-Key": key, "Idempotency-Key": "abc 123"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "account": ACCOUNT,
        "role": "0x" + "ab" * 32,
        "caller": {"org_id": 3, "account": ACCOUNT, "role": "operator"},
        "idempotency_key": "abc 123",
        "session_active": True,
    }


def test_malformed_json(client: TestClient, key: str) -> None:
    response = client.post(
        "/grants",
        content=b'{"account": "0x',
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    doc = problem(response, 400, "malformed-json")
    assert "malformed JSON" in doc["detail"]
    assert doc["errors"][0]["field"] == "body"


def test_non_json_content_type(client: TestClient, key: str) -> None:
    response = client.post(
        "/grants",
        content=json.dumps(body()).encode(),
        headers={"X-API-Key": key, "Content-Type": "text/plain"},
    )
    doc = problem(response, 415, "unsupported-media-type")
    assert "application/json" in doc["detail"]


def test_unknown_field_is_named(client: TestClient, key: str) -> None:
    response = client.post("/grants", json=body(admin=True), headers={"X-API-Key": key})
    doc = problem(response, 422, "validation-error")
    assert fields(doc) == {"body.admin": "unknown field"}
    assert "body.admin: unknown field" in doc["detail"]


def test_wrong_type_and_missing_field(client: TestClient, key: str) -> None:
    payload = body(amount="lots", tags=["ok", 5])
    del payload["role"]
    response = client.post("/grants", json=payload, headers={"X-API-Key": key})
    doc = problem(response, 422, "validation-error")
    errors = fields(doc)
    assert set(errors) == {"body.amount", "body.tags[1]", "body.role"}
    assert errors["body.role"] == "field required"
    assert "integer" in errors["body.amount"]
    assert "lots" not in response.text  # input is never echoed


def test_nested_paths(client: TestClient) -> None:
    response = client.post("/items", json={"items": [body(), body(account="0x12")]})
    doc = problem(response, 422, "validation-error")
    assert list(fields(doc)) == ["body.items[1].account"]


@pytest.mark.parametrize(
    ("account", "reason"),
    [
        ("0x12", "expected 0x followed by 40 hex digits"),
        (ACCOUNT[2:], "expected 0x followed by 40 hex digits"),
        (ACCOUNT[:-1] + "e", "checksum"),
        (ACCOUNT[:-1] + "G", "expected 0x followed by 40 hex digits"),
        (12345, "string"),
    ],
)
def test_bad_address(client: TestClient, key: str, account: object, reason: str) -> None:
    response = client.post("/grants", json=body(account=account), headers={"X-API-Key": key})
    doc = problem(response, 422, "validation-error")
    errors = fields(doc)
    assert list(errors) == ["body.account"]
    assert reason in errors["body.account"]
    if isinstance(account, str):
        assert "not a valid Ethereum address" in errors["body.account"]


def test_bad_bytes32(client: TestClient, key: str) -> None:
    response = client.post("/grants", json=body(role="0x1234"), headers={"X-API-Key": key})
    doc = problem(response, 422, "validation-error")
    assert "not a valid 32-byte value" in fields(doc)["body.role"]


def test_missing_api_key(client: TestClient) -> None:
    response = client.post("/grants", json=body())
    doc = problem(response, 401, "unauthorized")
    assert doc["detail"] == "missing X-API-Key header"
    assert response.headers["www-authenticate"] == "ApiKey"


@pytest.mark.parametrize("wrong", ["nope", "crm_" + "A" * 43, "revoked"])
def test_invalid_api_key(setup: tuple[TestClient, str, str], wrong: str) -> None:
    client, _, revoked_key = setup
    response = client.post(
        "/grants", json=body(), headers={"X-API-Key": revoked_key if wrong == "revoked" else wrong}
    )
    doc = problem(response, 401, "unauthorized")
    assert doc["detail"] == "invalid API key"
    assert response.headers["www-authenticate"] == "ApiKey"


@pytest.mark.parametrize("value", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_bad_idempotency_key(client: TestClient, key: str, value: str) -> None:
    response = client.post(
        "/grants",
        json=body(),
        headers={"X-API-Key": key, "Idempotency-Key": value.encode("latin-1")},
    )
    doc = problem(response, 400, "bad-request")
    assert "Idempotency-Key" in doc["detail"]
    assert list(fields(doc)) == ["header.Idempotency-Key"]


def test_unknown_route_and_wrong_method(client: TestClient) -> None:
    doc = problem(client.get("/nowhere"), 404, "not-found")
    assert doc["detail"] == "nothing at /nowhere"
    assert doc["instance"] == "/nowhere"
    response = client.delete("/grants")
    doc = problem(response, 405, "method-not-allowed")
    assert "DELETE" in doc["detail"]
    assert "POST" in response.headers["allow"]


def test_problem_errors_carry_extensions(client: TestClient) -> None:
    doc = problem(client.get("/conflict"), 409, "conflict")
    assert doc["operation_id"] == "op-1"
    assert doc["instance"] == "/conflict"
    doc = problem(client.get("/forbidden"), 403, "missing-role")
    assert doc["role"] == "CRM_OPERATOR"
    doc = problem(client.get("/missing"), 404, "not-found")
    assert doc["instance"] == "/v1/operations/op-9"
    doc = problem(client.get("/internal"), 500, "internal-error")
    assert doc["detail"] == "the chain node is gone"


def test_reserved_extension_names_are_refused() -> None:
    with pytest.raises(TypeError, match="status"):
        Conflict("x", status=200)


def test_unexpected_error_is_a_500_without_internals(client: TestClient) -> None:
    response = client.get("/boom")
    doc = problem(response, 500, "internal-error")
    assert "hunter2" not in response.text
    assert "secret" not in response.text
    assert "RuntimeError" not in response.text
    assert len(doc["error_id"]) == 32


def test_settings_dependency(client: TestClient) -> None:
    response = client.get("/settings")
    assert response.status_code == 200
    assert response.json().startswith("sqlite:///")


def test_openapi_documents_the_key_and_problems(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "API key issued to a CRM application (`crm_...`).",
    }
    responses = spec["paths"]["/grants"]["post"]["responses"]
    assert PROBLEM_JSON in responses["401"]["content"]
    assert "Problem" in spec["components"]["schemas"]
    params = {p["name"] for p in spec["paths"]["/grants"]["post"]["parameters"]}
    assert "Idempotency-Key" in params


# --- property tests: the address type never crashes ---------------------------------------------

_address_adapter: TypeAdapter[str] = TypeAdapter(EthAddress)
_hex40 = st.text(alphabet="0123456789abcdefABCDEF", min_size=40, max_size=40)
_address_like = st.one_of(
    st.text(),
    st.text(alphabet="0123456789abcdefABCDEFxX \n\t\u0660", max_size=46),
    _hex40.map(lambda h: "0x" + h),
    _hex40.map(lambda h: "0X" + h),
    st.binary(max_size=24).map(lambda b: "0x" + b.hex()),
    st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex() + "\n"),
)


@hypothesis_settings
@given(_address_like)
def test_address_validator_accepts_or_rejects_cleanly(value: str) -> None:
    try:
        result = _address_adapter.validate_python(value)
    except ValidationError as exc:
        (error,) = exc.errors()
        assert "not a valid Ethereum address" in error["msg"]
        return
    assert len(result) == 42
    assert result.startswith("0x")
    assert result.lower() == value.lower()
    assert _address_adapter.validate_python(result) == result
    assert _address_adapter.validate_python(result.lower()) == result


@hypothesis_settings
@given(
    account=st.one_of(
        _address_like,
        st.integers(),
        st.none(),
        st.booleans(),
        st.lists(st.text(max_size=3), max_size=2),
    )
)
def test_address_over_http_never_500s(setup: tuple[TestClient, str, str], account: Any) -> None:
    client, key, _ = setup
    response = client.post("/grants", json=body(account=account), headers={"X-API-Key": key})
    assert response.status_code in {200, 422}, response.text
    if response.status_code == 422:
        assert response.headers["content-type"] == PROBLEM_JSON
        assert list(fields(response.json())) == ["body.account"]


@hypothesis_settings
@given(raw=st.binary(max_size=64))
def test_arbitrary_bodies_never_500(setup: tuple[TestClient, str, str], raw: bytes) -> None:
    client, key, _ = setup
    response = client.post(
        "/grants", content=raw, headers={"X-API-Key": key, "Content-Type": "application/json"}
    )
    assert response.status_code in {400, 422}, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
