"""Request bodies over MAX_REQUEST_BODY_BYTES get a 413 problem before they are read or parsed,
and a request without a valid API key gets its 401 before its body is read."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from crm_gateway.api.app import create_app
from crm_gateway.runtime import Runtime, build_runtime
from crm_gateway.store.models import Operation
from tests.conftest import make_settings

LIMIT = 4096
ACCOUNT = "0x" + "11" * 20


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    built = build_runtime(make_settings(tmp_path, max_request_body_bytes=LIMIT))
    yield built
    built.close()


def _nothing_queued(runtime: Runtime) -> None:
    with runtime.session_factory() as session:
        assert session.query(Operation).count() == 0


def _asgi_post(
    app: FastAPI, path: str, headers: dict[str, str], chunks: list[bytes]
) -> tuple[int, dict[str, str], bytes, int]:
    """POST through the ASGI interface; also how many body chunks the app asked for."""
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    asked = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], response_headers, body, asked


@pytest.fixture
def app_and_headers(
    runtime: Runtime, issue_key: Callable[[int, str, str], str], founder_admin: str
) -> Iterator[tuple[FastAPI, dict[str, str], TestClient]]:
    app = create_app(runtime=runtime)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield app, {"X-API-Key": issue_key(1, founder_admin, "ORG_ADMIN")}, client


def test_a_declared_length_over_the_limit_is_413_before_the_body_is_read(
    app_and_headers: tuple[FastAPI, dict[str, str], TestClient], runtime: Runtime
) -> None:
    app, headers, _client = app_and_headers
    body = b"{" + b" " * LIMIT  # not even JSON: parsing it would answer 400
    status, response_headers, content, asked = _asgi_post(
        app,
        "/v1/roles/grants",
        {**headers, "Content-Type": "application/json", "Content-Length": str(len(body))},
        [body],
    )
    assert status == 413
    assert response_headers["content-type"] == "application/problem+json"
    assert b'"type":"https://crm-chaincode.dev/problems/content-too-large"' in content
    assert f"limit of {LIMIT} bytes".encode() in content
    assert asked == 0, "the body must not be read"
    _nothing_queued(runtime)


def test_a_streamed_body_over_the_limit_is_413(
    app_and_headers: tuple[FastAPI, dict[str, str], TestClient], runtime: Runtime
) -> None:
    _app, headers, client = app_and_headers

    def chunks() -> Iterator[bytes]:
        yield b'{"role": "AGENT", "account": "' + ACCOUNT.encode() + b'", "x": "'
        for _ in range(LIMIT // 512 + 2):
            yield b"a" * 512
        yield b'"}'

    response = client.post(
        "/v1/roles/grants",
        content=chunks(),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/content-too-large")
    assert response.json()["title"] == "Content Too Large"
    _nothing_queued(runtime)


@pytest.mark.parametrize("key", [None, "crm_not-a-key"])
def test_no_valid_api_key_is_401_before_the_body_is_read(
    app_and_headers: tuple[FastAPI, dict[str, str], TestClient], runtime: Runtime, key: str | None
) -> None:
    app, _headers, _client = app_and_headers
    body = b"{" + b" " * (LIMIT * 2)
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    if key is not None:
        headers["X-API-Key"] = key
    status, response_headers, _content, asked = _asgi_post(app, "/v1/roles/grants", headers, [body])
    assert status == 401
    assert response_headers["content-type"] == "application/problem+json"
    assert response_headers["www-authenticate"].startswith("ApiKey")
    assert asked == 0, "the body must not be read before the key is checked"
    # A small body without a key: 401 too, not a 4xx about the body.
    small = b'{"role": "AGENT"'
    status, _, _, asked = _asgi_post(
        app,
        "/v1/roles/grants",
        {k: v for k, v in headers.items() if k != "Content-Length"}
        | {"Content-Length": str(len(small))},
        [small],
    )
    assert (status, asked) == (401, 0)
    _nothing_queued(runtime)


def test_a_body_within_the_limit_goes_through(
    app_and_headers: tuple[FastAPI, dict[str, str], TestClient], new_signer: Callable[[], str]
) -> None:
    _app, headers, client = app_and_headers
    response = client.post(
        "/v1/roles/grants", json={"role": "AGENT", "account": new_signer()}, headers=headers
    )
    assert response.status_code == 202, response.text


def test_portal_writes_need_the_customers_session_and_sign_ins_their_body(
    app_and_headers: tuple[FastAPI, dict[str, str], TestClient],
) -> None:
    """Under /v1/me/ the customer's session stands for the key (no session: 401 before the body
    is read); the portal's and the console's sign-ins are authenticated by their body, which
    reaches the route (a 4xx about its content, never a 401 for a missing key)."""
    app, _headers, _client = app_and_headers
    small = b'{"purpose_id": "0x00"}'
    headers = {"Content-Type": "application/json", "Content-Length": str(len(small))}
    status, response_headers, _content, asked = _asgi_post(app, "/v1/me/consents", headers, [small])
    assert (status, asked) == (401, 0)
    assert response_headers["content-type"] == "application/problem+json"
    for sign_in in ("/v1/me/session", "/v1/console/session"):
        status, _, _, asked = _asgi_post(app, sign_in, headers, [small])
        assert status not in (401, 413), sign_in
        assert asked >= 1, sign_in  # the route read the body: it is what signs in
    too_big = b"{" + b" " * (LIMIT * 2)
    status, _, _, asked = _asgi_post(
        app, "/v1/me/session", headers | {"Content-Length": str(len(too_big))}, [too_big]
    )
    assert (status, asked) == (413, 0)
