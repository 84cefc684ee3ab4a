"""CLI commands next to a gateway that serves, on one database and one Anvil.

* `crm-chaincode apikeys create` makes a new keystore account and key while the gateway runs;
  the running gateway (not a restarted one) signs with it at once.
* `crm-chaincode import` runs while the gateway's own sender polls the same outbox: both may send
  the import's batches, each is sent once, and the report's counts are the chain's events.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_gateway.chain.anvil import AnvilNode
from crm_gateway.chain.artifacts import Artifacts
from crm_gateway.config import ChainKind, Settings, settings_environment
from crm_gateway.runtime import build_runtime, deploy, open_keystore
from crm_gateway.store.db import make_engine, make_session_factory
from crm_gateway.store.models import ChainTransaction, Operation
from tests.conftest import free_port, make_settings
from tests.e2e.gateway_process import GatewayProcess, ok
from tests.importer.conftest import grant_steward
from tests.importer.csvgen import generate

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path,
        chain_kind=ChainKind.ANVIL,
        anvil_port=free_port(),
        gateway_port=free_port(),
        log_level="warning",
    )


@pytest.fixture
def gateway(settings: Settings, tmp_path: Path) -> Iterator[GatewayProcess]:
    node = AnvilNode(settings)
    node.start()
    try:
        chain = build_chain(settings)
        deploy(settings, chain, open_keystore(settings))
        runtime = build_runtime(settings, chain=chain)
        try:
            grant_steward(runtime)  # the deployer imports
        finally:
            runtime.close()
        with GatewayProcess(settings, tmp_path / "gateway.log") as process:
            process.wait_ready()
            yield process
    finally:
        node.stop()


def build_chain(settings: Settings) -> Any:
    from crm_gateway.chain.connection import connect

    return connect(settings)


def _cli(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crm_gateway.cli", *args],
        env=settings_environment(settings, COLUMNS="250"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_key_made_while_the_gateway_serves_writes_at_once(
    settings: Settings, gateway: GatewayProcess
) -> None:
    made = _cli(settings, "apikeys", "create", "--org", "1", "--role", "DATA_STEWARD")
    assert made.returncode == 0, made.stdout + made.stderr
    key = re.search(r"^(\S{30,})$", made.stdout, re.MULTILINE)
    assert key is not None, made.stdout
    with gateway.client(key.group(1)) as client:
        deadline = time.monotonic() + 20
        while True:  # until the gateway's read model has the new account's role
            response = client.post("/v1/customers?wait=true", json={"email": "new.key@example.com"})
            if response.status_code != 403 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        created = ok(response, 201)
    assert created["operation"]["status"] == "confirmed"


def test_an_import_beside_the_gateways_sender_counts_what_the_chain_did(
    settings: Settings, gateway: GatewayProcess, tmp_path: Path
) -> None:
    expected = generate(tmp_path / "crm.csv", 1_200, seed=5)
    report_path = tmp_path / "report.json"
    imported = _cli(
        settings,
        "import",
        str(tmp_path / "crm.csv"),
        "--batch-size",
        "40",
        "--report",
        str(report_path),
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    report = json.loads(report_path.read_text())
    people = len(expected.people)

    chain = build_chain(settings)
    record = json.loads((settings.path(settings.deployments_dir) / "31337.json").read_text())
    registry = chain.w3.eth.contract(
        address=record["contracts"]["CustomerRegistry"]["address"],
        abi=Artifacts(settings.path(settings.abi_dir))["CustomerRegistry"].abi,
    )
    registered = registry.events.CustomerRegistered().get_logs(from_block=0)
    skipped = registry.events.RegistrationSkipped().get_logs(from_block=0)
    assert Counter(Counter(log["args"]["customerId"] for log in registered).values()) == {1: people}
    assert skipped == []  # a fresh chain: no batch was sent twice
    assert report["on_chain"]["registered"] == len(registered) == people
    assert report["on_chain"]["skipped"] == 0

    # One transaction per batch, and every recorded transaction carries an operation.
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            batches = session.scalar(
                select(func.count())
                .select_from(Operation)
                .where(Operation.kind == "customers.import")
            )
            txs = session.scalar(select(func.count()).select_from(ChainTransaction))
            carried = session.scalar(
                select(func.count(func.distinct(Operation.chain_tx_id))).where(
                    Operation.chain_tx_id.is_not(None)
                )
            )
    finally:
        engine.dispose()
    assert batches == report["on_chain"]["batches"]
    assert txs == carried
