"""Schemathesis against the real gateway: a live uvicorn server (embedded chain, contracts
deployed, pipeline and indexer running) on a free port, with an API key of every role.

Every operation of `/openapi.json` gets `FUZZ_EXAMPLES` generated requests (default 6: a few
hundred in all, inside `make test`; `make fuzz` asks for many more), each sent with the key of a
role drawn at random. Required of every answer: no server error, a status code the schema
declares for the operation, a declared content type, a body and headers matching the declared
schema.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from eth_account import Account
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from crm_gateway.api.app import create_app
from crm_gateway.runtime import build_runtime
from crm_gateway.security.apikeys import create_api_key
from crm_gateway.services.access import Role
from tests.conftest import free_port, make_settings

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
ROLES = [role.value for role in Role]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class LiveGateway:
    def __init__(self, url: str, keys: dict[str, str]) -> None:
        self.url, self.keys = url, keys
        self.cases = 0


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    runtime = build_runtime(make_settings(tmp))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(runtime=runtime), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the gateway did not start"
        assert thread.is_alive(), "the gateway exited at start"
        time.sleep(0.05)
    founder = str(runtime.contracts.record.deployer)

    def issue(account: str, role: str) -> str:
        with runtime.session_factory() as session:
            _row, plaintext = create_api_key(session, org_id=1, account=account, role=role)
            session.commit()
        return plaintext

    keys = {"CONSORTIUM_ADMIN": issue(founder, "CONSORTIUM_ADMIN")}
    keys["ORG_ADMIN"] = issue(founder, "ORG_ADMIN")
    admin = {"X-API-Key": keys["ORG_ADMIN"]}
    accounts = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for role in ROLES:
            if role in keys:
                continue
            account = accounts[role] = runtime.keystore.add(Account.create()).address
            runtime.chain.dev_fund(account, 10**20)
            granted = client.post(
                "/v1/roles/grants", json={"role": role, "account": account}, headers=admin
            )
            assert granted.status_code == 202, granted.text
            keys[role] = issue(account, role)
    deadline = time.monotonic() + 60
    while not all(runtime.read_model.has_role(r, a) for r, a in accounts.items()):
        assert time.monotonic() < deadline, "the role grants did not reach the read model"
        time.sleep(0.05)
    gateway = LiveGateway(url, keys)
    try:
        yield gateway
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        runtime.close()
        print(f"\nschemathesis: {gateway.cases} cases against {url}")


@pytest.fixture(scope="module")
def api_schema(live_gateway: LiveGateway) -> Any:
    return schemathesis.openapi.from_url(f"{live_gateway.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.given(role=st.sampled_from(ROLES))
@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_its_schema_says(
    case: Case, role: str, live_gateway: LiveGateway
) -> None:
    live_gateway.cases += 1
    case.call_and_validate(headers={"X-API-Key": live_gateway.keys[role]}, checks=CHECKS)
