"""The admin commands against a real Anvil node: keys, roles, organisations, clear refusals."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from eth_account import Account
from typer.testing import CliRunner

from crm_gateway.cli import app
from crm_gateway.config import Settings
from crm_gateway.security.apikeys import authenticate
from crm_gateway.store.db import make_engine, make_session_factory

pytestmark = pytest.mark.anvil


@pytest.fixture
def deployed(cli_env: CliRunner, node: Any) -> CliRunner:
    result = cli_env.invoke(app, ["deploy"])
    assert result.exit_code == 0, result.output
    return cli_env


def test_apikeys_create_makes_an_account_with_the_role_and_prints_the_key_once(
    deployed: CliRunner, anvil_settings: Settings
) -> None:
    result = deployed.invoke(
        app, ["apikeys", "create", "--org", "founder", "--role", "DATA_STEWARD"]
    )
    assert result.exit_code == 0, result.output
    [key] = re.findall(r"crm_[A-Za-z0-9_-]{43}", result.output)
    with make_session_factory(make_engine(anvil_settings.database_url))() as session:
        api_key = authenticate(session, key)
        assert api_key is not None
        assert api_key.key_hash != key
        assert key not in api_key.key_hash
        account, org_id, role = api_key.account, api_key.org_id, api_key.role
    assert (org_id, role) == (1, "DATA_STEWARD")

    roles = deployed.invoke(app, ["roles", "list", "--org", "1"])
    assert account in roles.output
    listing = deployed.invoke(app, ["apikeys", "list"])
    assert key not in listing.output
    assert key[:12] in listing.output


def test_roles_grant_and_revoke(deployed: CliRunner) -> None:
    # An account of the keystore: the gateway signs its consent to join the organisation.
    created = deployed.invoke(app, ["accounts", "new"])
    assert created.exit_code == 0, created.output
    agent = created.output.strip()
    granted = deployed.invoke(app, ["roles", "grant", "AGENT", agent])
    assert granted.exit_code == 0, granted.output
    assert "confirmed in block" in granted.output
    assert agent in deployed.invoke(app, ["roles", "list"]).output
    revoked = deployed.invoke(app, ["roles", "revoke", "agent", agent])
    assert revoked.exit_code == 0, revoked.output
    assert agent not in deployed.invoke(app, ["roles", "list"]).output


def test_orgs_propose_add_and_execute(deployed: CliRunner) -> None:
    admin = Account.create().address
    proposed = deployed.invoke(app, ["orgs", "propose-add", "merchant-one", admin])
    assert proposed.exit_code == 0, proposed.output
    proposal_id = re.search(r"proposal (\d+) created", proposed.output)
    assert proposal_id is not None
    executed = deployed.invoke(app, ["orgs", "execute", proposal_id.group(1)])
    assert executed.exit_code == 0, executed.output
    assert "merchant-one" in deployed.invoke(app, ["orgs", "list"]).output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["roles", "grant", "NOT_A_ROLE", "0x" + "11" * 20], "unknown role NOT_A_ROLE"),
        (["roles", "grant", "AGENT", "0x1234"], "is not an Ethereum address"),
        (
            ["apikeys", "create", "--org", "nobody", "--role", "AGENT"],
            "no organisation named nobody",
        ),
        (["roles", "revoke", "ORG_ADMIN", "DEPLOYER"], "LastOrganizationAdmin"),
        (["orgs", "execute", "42"], "proposal 42 does not exist"),
    ],
)
def test_bad_input_is_one_sentence_and_a_non_zero_exit(
    deployed: CliRunner, anvil_settings: Settings, arguments: list[str], message: str
) -> None:
    record = json.loads(
        (anvil_settings.path(anvil_settings.deployments_dir) / "31337.json").read_text()
    )
    arguments = [record["deployer"] if a == "DEPLOYER" else a for a in arguments]
    result = deployed.invoke(app, arguments)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
