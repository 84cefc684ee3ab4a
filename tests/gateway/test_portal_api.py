"""`/v1/me` and `/v1/console` over HTTP: sign-in, the session cookie, CSRF, the CSP and `/docs`.

The browser tests (tests/browser/) drive the same through Chromium; these need no browser.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from crm_gateway.pipeline.outbox import ChainWrite
from crm_gateway.runtime import Runtime
from crm_gateway.services.operations import OperationService
from tests.gateway.test_consents_api import World


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


def sign_in_body(client: TestClient, wallet: LocalAccount, **change: Any) -> dict[str, str]:
    request = client.get("/v1/me/session/nonce").json()
    issued = datetime.fromisoformat(request["issued_at"])
    expires = change.pop("expires", datetime.fromisoformat(request["expiration_time"]))
    domain = change.pop("domain", request["domain"])
    text = (
        f"{domain} wants you to sign in with your Ethereum account:\n{wallet.address}\n\n"
        f"{request['statement']}\n\nURI: {request['uri']}\nVersion: 1\n"
        f"Chain ID: {request['chain_id']}\nNonce: {change.pop('nonce', request['nonce'])}\n"
        f"Issued At: {issued.isoformat().replace('+00:00', 'Z')}\n"
        f"Expiration Time: {expires.isoformat().replace('+00:00', 'Z')}"
    )
    signature = wallet.sign_message(encode_defunct(text=text)).signature.to_0x_hex()
    return {"message": text, "signature": signature}


def test_sign_in_sets_a_strict_httponly_cookie_and_binds_the_customer(world: World) -> None:
    client = world.client
    assert client.get("/v1/me").status_code == 401
    signed = client.post("/v1/me/session", json=sign_in_body(client, world.wallet))
    assert signed.status_code == 200, signed.text
    assert signed.json()["customer_id"] == world.customer
    cookie = signed.headers["set-cookie"]
    assert "crm_portal=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    me = client.get("/v1/me")
    assert me.status_code == 200
    assert me.json()["record"]["profile"]["email"] == "carol@example.com"
    assert [o["org_id"] for o in me.json()["organisations"]] == [1]


def test_the_nonce_is_spent_once_and_must_be_ours(world: World) -> None:
    client = world.client
    body = sign_in_body(client, world.wallet)
    assert client.post("/v1/me/session", json=body).status_code == 200
    replayed = client.post("/v1/me/session", json=body)
    assert replayed.status_code == 401
    assert replayed.json()["type"].endswith("/sign-in-refused")
    forged = client.post("/v1/me/session", json=sign_in_body(client, world.wallet, nonce="a" * 32))
    assert forged.status_code == 401
    assert "nonce" in forged.json()["detail"]


def test_expired_foreign_and_stranger_sign_ins_are_refused(world: World) -> None:
    client = world.client
    past = datetime.now(UTC) - timedelta(seconds=1)
    expired = client.post("/v1/me/session", json=sign_in_body(client, world.wallet, expires=past))
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    foreign = client.post(
        "/v1/me/session", json=sign_in_body(client, world.wallet, domain="evil.example")
    )
    assert foreign.status_code == 401
    assert "evil.example" in foreign.json()["detail"]
    stranger = client.post("/v1/me/session", json=sign_in_body(client, Account.create()))
    assert stranger.status_code == 403
    assert "not a customer's registered wallet" in stranger.json()["detail"]
    assert client.get("/v1/me").status_code == 401


def test_writes_in_a_session_need_its_csrf_token(world: World) -> None:
    client = world.client
    token = client.post("/v1/me/session", json=sign_in_body(client, world.wallet)).json()[
        "csrf_token"
    ]
    for headers in ({}, {"X-CSRF-Token": "wrong"}):
        refused = client.delete("/v1/me/session", headers=headers)
        assert refused.status_code == 403
        assert refused.json()["type"].endswith("/csrf-token-missing")
        assert client.get("/v1/me").status_code == 200
    assert client.delete("/v1/me/session", headers={"X-CSRF-Token": token}).status_code == 204
    assert client.get("/v1/me").status_code == 401


def test_the_console_holds_the_key_in_the_session(
    world: World, role_key: Callable[[str], dict[str, str]]
) -> None:
    client = world.client
    agent = role_key("AGENT")
    assert client.get("/v1/console/chain").status_code == 401
    signed = client.post("/v1/console/session", json={"api_key": agent["X-API-Key"]})
    assert signed.status_code == 200
    assert signed.json()["roles"] == ["AGENT"]
    assert agent["X-API-Key"] not in signed.text
    chain = client.get("/v1/console/chain", params={"blocks": 3})
    assert chain.status_code == 200
    assert len(chain.json()["blocks"]) == 3
    assert client.get("/v1/console/proposals").json() == {"proposals": []}
    # Walking the log and the chain is for AUDITOR and DATA_STEWARD keys.
    assert client.get("/v1/console/verify").status_code == 403
    # A write with the session: refused without the CSRF token, and by role with it.
    no_token = client.post("/v1/orgs/proposals/1/approvals")
    assert no_token.status_code == 403
    assert no_token.json()["type"].endswith("/csrf-token-missing")
    with_token = client.post(
        "/v1/orgs/proposals/1/approvals", headers={"X-CSRF-Token": signed.json()["csrf_token"]}
    )
    assert with_token.status_code == 403
    assert "ORG_ADMIN" in with_token.json()["detail"]
    assert (
        client.post("/v1/console/session", json={"api_key": "crm_" + "x" * 43}).status_code == 401
    )


def test_docs_and_pages_are_local_with_a_strict_csp(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "cdn" not in docs.text
    assert "https://" not in docs.text
    csp = docs.headers["content-security-policy"]
    assert csp.startswith("default-src 'none'")
    assert "https:" not in csp
    assert "*" not in csp
    assert client.get("/redoc").status_code == 404
    for path in ("/portal/", "/console/", "/assets/portal.js", "/assets/docs/swagger-ui-bundle.js"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-security-policy"] == csp
    # The API's own answers carry no browser headers (they are not pages).
    assert "content-security-policy" not in client.get("/healthz").headers
    openapi = client.get("/openapi.json").json()
    assert "/v1/me/consents" in openapi["paths"]
    assert "/v1/me/access-log" in openapi["paths"]


def test_a_retired_purpose_stays_listed_where_the_customer_decided(
    world: World, founder_admin: str
) -> None:
    """A consent given must remain visible (and withdrawable): retiring the purpose does not hide
    it from the customer's list."""
    client, runtime = world.client, world.runtime
    granted = world.relay(world.signed(world.typed(True)))
    assert granted.status_code == 200, granted.text
    client.post("/v1/me/session", json=sign_in_body(client, world.wallet))
    item = next(i for i in client.get("/v1/me/consents").json()["items"] if i["org_id"] == 1)
    assert item["granted"]
    assert item["purpose_active"]
    operations = OperationService(runtime.session_factory, runtime.pipeline)
    view, _ = operations.submit(
        ChainWrite(
            "purposes.retire", "PurposeRegistry", "retirePurpose", [world.marketing], founder_admin
        ),
        api_key_id=None,
        idempotency_key=None,
        payload={},
    )
    deadline = time.monotonic() + 20
    while not view.settled:
        assert time.monotonic() < deadline
        time.sleep(0.05)
        view = operations.get_internal(view.id)
    assert view.status == "confirmed", view.error
    assert view.block_number is not None
    runtime.index_worker.wait_for_block(view.block_number, 20)
    items = client.get("/v1/me/consents").json()["items"]
    retired = [i for i in items if i["purpose_id"] == world.marketing]
    assert len(retired) == 1
    assert retired[0]["purpose_active"] is False
    assert retired[0]["history"]


def test_sign_in_and_sessions_are_shared_by_every_process_of_the_gateway(
    world: World, role_key: Callable[[str], dict[str, str]]
) -> None:
    """A second app on the same database (as a second `--workers` process is): the nonce one
    process issued signs in at the other, once only, and either process knows the session.
    The database holds neither a session id nor an API key that could be replayed."""
    from sqlalchemy import select

    from crm_gateway.api.app import create_app
    from crm_gateway.store.models import WebSessionRow

    first = world.client
    with TestClient(create_app(runtime=world.runtime)) as second:
        body = sign_in_body(first, world.wallet)
        signed = second.post("/v1/me/session", json=body)
        assert signed.status_code == 200, signed.text
        assert first.post("/v1/me/session", json=body).status_code == 401  # spent everywhere
        cookie = signed.cookies["crm_portal"]
        first.cookies.set("crm_portal", cookie)
        assert first.get("/v1/me").json()["customer_id"] == world.customer
        key = role_key("AGENT")["X-API-Key"]
        console = first.post("/v1/console/session", json={"api_key": key})
        assert console.status_code == 200, console.text
        second.cookies.set("crm_console", console.cookies["crm_console"])
        assert second.get("/v1/console/session").status_code == 200
    with world.runtime.session_factory() as session:
        rows = session.scalars(select(WebSessionRow)).all()
    stored = {value for row in rows for value in (row.id_hash, row.subject, row.csrf_token)}
    assert cookie not in stored
    assert console.cookies["crm_console"] not in stored
    assert key not in stored
