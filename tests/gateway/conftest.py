"""A real gateway on the embedded chain: contracts deployed, pipeline running, API keys issued."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from crm_gateway.api.app import create_app
from crm_gateway.runtime import Runtime, build_runtime
from crm_gateway.security.apikeys import create_api_key
from crm_gateway.services.access import AccessService, Role
from crm_gateway.services.consent import purpose_id
from crm_gateway.store import customers as customer_store
from crm_gateway.store.models import AccessAction, AccessDecision
from tests.conftest import make_settings


@pytest.fixture
def gateway_database() -> str:
    """Which database the gateway runs on; a test module overrides this with `DATABASES`."""
    return "sqlite"


#: `params` for a module's own `gateway_database` fixture: run its tests on SQLite and PostgreSQL.
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def runtime(
    tmp_path: Path, gateway_database: str, request: pytest.FixtureRequest
) -> Iterator[Runtime]:
    overrides = {}
    if gateway_database == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_schema_url")
    runtime = build_runtime(make_settings(tmp_path, **overrides))
    yield runtime
    runtime.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def founder_admin(runtime: Runtime) -> str:
    """The deployer: CONSORTIUM_ADMIN and ORG_ADMIN of the founding organisation (id 1)."""
    return str(runtime.contracts.record.deployer)


@pytest.fixture
def issue_key(runtime: Runtime) -> Callable[[int, str, str], str]:
    def issue(org_id: int, account: str, role: str = "ORG_ADMIN") -> str:
        with runtime.session_factory() as session:
            _key, plaintext = create_api_key(session, org_id=org_id, account=account, role=role)
            session.commit()
        return plaintext

    return issue


@pytest.fixture
def admin_headers(issue_key: Callable[[int, str, str], str], founder_admin: str) -> dict[str, str]:
    return {"X-API-Key": issue_key(1, founder_admin, "ORG_ADMIN")}


@pytest.fixture
def new_signer(runtime: Runtime) -> Callable[[], str]:
    """A funded account whose key the gateway holds, so it can sign as it."""

    def make() -> str:
        account = runtime.keystore.add(Account.create())
        runtime.chain.dev_fund(account.address, 10**20)
        return account.address

    return make


def wait_for(client: TestClient, headers: dict[str, str], operation_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/v1/operations/{operation_id}", headers=headers).json()
        if body["status"] in {"confirmed", "failed"}:
            return body
        time.sleep(0.02)
    raise AssertionError(f"operation {operation_id} did not settle")


def events(operation: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [e["args"] for e in operation["result"]["events"] if e["event"] == name]


def add_organization(client: TestClient, headers: dict[str, str], name: str, admin: str) -> int:
    """Add an organisation through propose + execute (one org: a majority is one approval)."""
    proposed = client.post(
        "/v1/orgs/proposals?wait=true",
        json={"kind": "add_organization", "name": name, "admin": admin},
        headers=headers,
    )
    assert proposed.status_code == 200, proposed.text
    proposal_id = events(proposed.json(), "ProposalCreated")[0]["proposalId"]
    executed = client.post(f"/v1/orgs/proposals/{proposal_id}/execution?wait=true", headers=headers)
    assert executed.status_code == 200, executed.text
    return int(events(executed.json(), "OrganizationAdded")[0]["orgId"])


__all__ = ["AccessService", "Role", "add_organization", "events", "wait_for"]


@pytest.fixture
def gateway_of(runtime: Runtime) -> Iterator[Callable[[int], TestClient]]:
    """A client of organisation `org_id`'s own gateway: a key is in force only at the gateway of
    its organisation, so another organisation's admin takes part through its own. Here it shares
    this runtime's chain, store and workers (started by `client`), with its key check serving
    `org_id`; tests that need organisations apart run two processes (tests/e2e)."""
    from crm_gateway.api.deps import chain_confirmation
    from crm_gateway.security.apikeys import KeyAccountCheck

    opened: list[TestClient] = []
    quiet = runtime.settings.model_copy(
        update={"pipeline_enabled": False, "indexer_enabled": False, "audit_anchor_enabled": False}
    )

    def make(org_id: int) -> TestClient:
        other = TestClient(create_app(quiet, runtime=runtime), raise_server_exceptions=False)
        other.__enter__()
        other.app.state.key_check = KeyAccountCheck(  # type: ignore[attr-defined]
            runtime.read_model, org_id, chain_confirmation(runtime)
        )
        opened.append(other)
        return other

    yield make
    for other in opened:
        other.__exit__(None, None, None)


@pytest.fixture
def role_key(
    client: TestClient,
    admin_headers: dict[str, str],
    issue_key: Callable[[int, str, str], str],
    new_signer: Callable[[], str],
) -> Callable[[str], dict[str, str]]:
    """Headers of a new founder-organisation key whose account holds `role` on-chain."""

    def make(role: str) -> dict[str, str]:
        account = new_signer()
        granted = client.post(
            "/v1/roles/grants?wait=true",
            json={"role": role, "account": account},
            headers=admin_headers,
        )
        assert granted.status_code == 200, granted.text
        return {"X-API-Key": issue_key(1, account, role)}

    return make


def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def define_purpose(
    client: TestClient, headers: dict[str, str], runtime: Runtime, slug: str, basis: str
) -> str:
    """Register a purpose on-chain and wait until the read model (which gates reads) has it."""
    response = client.post(
        "/v1/purposes?wait=true",
        json={
            "purpose": slug,
            "lawful_basis": basis,
            "notice_text": f"How we use data for {slug}.",
        },
        headers=headers,
    )
    assert response.status_code == 200, response.text
    pid = purpose_id(slug)
    wait_until(lambda: runtime.read_model.purpose(pid) is not None)
    return pid


@pytest.fixture
def support_purpose(client: TestClient, admin_headers: dict[str, str], runtime: Runtime) -> str:
    """`support`, processed under a contract with the customer: reads need no consent."""
    return define_purpose(client, admin_headers, runtime, "support", "contract")


def log_many(runtime: Runtime, count: int) -> None:
    """`count` allowed reads of distinct customers in the access log, in one transaction."""
    with runtime.session_factory() as session:
        customer_store.log_accesses(
            session,
            [f"0x{n:064x}" for n in range(count)],
            action=AccessAction.READ,
            decision=AccessDecision.ALLOWED,
            purpose="support",
            org_id=1,
            account="0x" + "ab" * 20,
        )
        session.commit()
