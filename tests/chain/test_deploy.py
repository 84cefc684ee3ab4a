"""Migrations and the deployment record: idempotent, recorded, and refusing a reset chain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from crm_gateway.chain.connection import connect
from crm_gateway.chain.deployments import DeploymentMismatch
from crm_gateway.chain.migrations import MigrationError, discover
from crm_gateway.cli import app
from crm_gateway.config import ChainKind, Settings
from crm_gateway.runtime import deploy, open_keystore
from tests.conftest import free_port, make_settings

MIGRATIONS = [
    "0001_consortium",
    "0002_customer_registry",
    "0003_consent",
    "0004_loyalty",
    "0005_audit_anchor",
]


def _record_path(settings: Settings) -> Path:
    return settings.path(settings.deployments_dir) / f"{settings.anvil_chain_id}.json"


@pytest.mark.anvil
def test_deploy_records_every_contract_and_a_second_run_changes_nothing(
    anvil_settings: Settings, node: Any
) -> None:
    chain = connect(anvil_settings)
    keystore = open_keystore(anvil_settings)
    first = deploy(anvil_settings, chain, keystore)
    assert first.applied == MIGRATIONS
    record_text = _record_path(anvil_settings).read_text()
    record = json.loads(record_text)
    consortium = record["contracts"]["Consortium"]
    assert record["chainId"] == 31337
    assert set(consortium) == {"address", "txHash", "blockNumber", "artifactHash", "migration"}
    assert chain.has_code(consortium["address"])
    receipt = chain.w3.eth.get_transaction_receipt(consortium["txHash"])
    assert receipt["contractAddress"] == consortium["address"]
    assert receipt["blockNumber"] == consortium["blockNumber"]

    deployer = str(first.record.deployer)
    nonce = chain.w3.eth.get_transaction_count(deployer)
    second = deploy(anvil_settings, chain, open_keystore(anvil_settings))
    assert second.applied == []
    assert second.skipped == MIGRATIONS
    assert _record_path(anvil_settings).read_text() == record_text
    assert chain.w3.eth.get_transaction_count(deployer) == nonce


@pytest.mark.anvil
def test_the_founding_organisation_comes_from_settings(tmp_path: Path) -> None:
    from crm_gateway.chain.anvil import AnvilNode

    settings = make_settings(
        tmp_path, chain_kind=ChainKind.ANVIL, anvil_port=free_port(), founder_org_name="acme-brand"
    )
    with AnvilNode(settings):
        chain = connect(settings)
        keystore = open_keystore(settings)
        record = deploy(settings, chain, keystore).record
        consortium = chain.w3.eth.contract(
            address=record.contracts["Consortium"].address,
            abi=json.loads((settings.path(settings.abi_dir) / "Consortium.json").read_text())[
                "abi"
            ],
        )
        org = consortium.functions.organization(1).call()
        assert org[1] == "acme-brand"
        assert org[2] == record.deployer


@pytest.mark.anvil
def test_a_reset_chain_is_refused_in_one_sentence(
    anvil_settings: Settings, node: Any, cli_env: CliRunner
) -> None:
    first = cli_env.invoke(app, ["deploy"])
    assert first.exit_code == 0, first.output
    record_text = _record_path(anvil_settings).read_text()

    node.stop()
    anvil_settings.path(anvil_settings.anvil_state_file).unlink()
    node.start()  # same chain id, empty chain

    again = cli_env.invoke(app, ["deploy"])
    assert again.exit_code == 1
    message = again.output.strip()
    assert "no code at" in message
    assert "was reset" in message
    assert len(message.splitlines()) == 1
    assert _record_path(anvil_settings).read_text() == record_text


def test_a_record_of_another_chain_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    chain = connect(settings)
    directory = tmp_path / "deployments"
    directory.mkdir()
    (directory / f"{chain.chain_id}.json").write_text(json.dumps({"chainId": 1, "contracts": {}}))
    from crm_gateway.chain.deployments import DeploymentStore

    with pytest.raises(DeploymentMismatch, match="chain id 1"):
        DeploymentStore(directory, chain.chain_id).load()


def test_the_embedded_chain_leaves_no_record_on_disk(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    chain = connect(settings)
    report = deploy(settings, chain, open_keystore(settings))
    assert report.applied == MIGRATIONS
    assert not (tmp_path / "deployments").exists()

    # 0002 binds the CustomerRegistry to the Consortium that 0001 recorded.
    contracts = report.record.contracts
    artifact = settings.path(settings.abi_dir) / "CustomerRegistry.json"
    abi = json.loads(artifact.read_text())["abi"]
    registry = chain.w3.eth.contract(address=contracts["CustomerRegistry"].address, abi=abi)
    assert registry.functions.consortium().call() == contracts["Consortium"].address
    assert contracts["CustomerRegistry"].migration == "0002_customer_registry"

    # 0003 binds the PurposeRegistry to the Consortium, and the ConsentLedger to all three.
    def bound(name: str) -> Any:
        abi = json.loads((settings.path(settings.abi_dir) / f"{name}.json").read_text())["abi"]
        return chain.w3.eth.contract(address=contracts[name].address, abi=abi).functions

    purposes, ledger = bound("PurposeRegistry"), bound("ConsentLedger")
    assert purposes.consortium().call() == contracts["Consortium"].address
    assert ledger.consortium().call() == contracts["Consortium"].address
    assert ledger.customerRegistry().call() == contracts["CustomerRegistry"].address
    assert ledger.purposeRegistry().call() == contracts["PurposeRegistry"].address
    assert contracts["PurposeRegistry"].migration == "0003_consent"
    assert contracts["ConsentLedger"].migration == "0003_consent"

    # 0004 binds LoyaltyPoints to the Consortium and the CustomerRegistry, RegisteredOnly.
    points = bound("LoyaltyPoints")
    assert points.consortium().call() == contracts["Consortium"].address
    assert points.customerRegistry().call() == contracts["CustomerRegistry"].address
    assert (points.name().call(), points.symbol().call(), points.decimals().call()) == (
        "Coalition Points",
        "PTS",
        0,
    )
    assert points.transferPolicy().call() == 0
    assert contracts["LoyaltyPoints"].migration == "0004_loyalty"

    # 0005 binds the AuditAnchor to the Consortium, whose AUDITORs anchor.
    anchor = bound("AuditAnchor")
    assert anchor.consortium().call() == contracts["Consortium"].address
    assert anchor.batchCount().call() == 0
    assert contracts["AuditAnchor"].migration == "0005_audit_anchor"


def test_migrations_are_discovered_in_number_order_and_numbers_are_unique(tmp_path: Path) -> None:
    (tmp_path / "0002_second.py").write_text("def apply(ctx):\n    pass\n")
    (tmp_path / "0001_first.py").write_text("def apply(ctx):\n    pass\n")
    (tmp_path / "helpers.py").write_text("# not a migration\n")
    assert [m.name for m in discover(tmp_path)] == ["0001_first", "0002_second"]
    (tmp_path / "0002_clash.py").write_text("def apply(ctx):\n    pass\n")
    with pytest.raises(MigrationError, match="share a number"):
        discover(tmp_path)


def test_a_migration_without_apply_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_empty.py").write_text("VALUE = 1\n")
    [migration] = discover(tmp_path)
    with pytest.raises(MigrationError, match="no apply"):
        migration.load()
