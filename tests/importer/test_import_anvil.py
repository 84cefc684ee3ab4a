"""Imports on a real Anvil: 10,000 rows with known duplicates and invalid rows, and a SIGKILL.

The first test runs `crm-chaincode import` in-process on a generated Salesforce export and checks
the report line by line, then the chain (every imported person registered exactly once, active,
held by this organisation) and the vault (every record decrypts to its person). The second kills
the command with SIGKILL half-way, runs it again, and checks that nobody was registered twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from crm_gateway.chain.calls import call_many
from crm_gateway.cli import app
from crm_gateway.config import Settings
from crm_gateway.customers.profile import CustomerProfile, email_index_form
from crm_gateway.runtime import Runtime, build_runtime
from crm_gateway.store import customers as store
from crm_gateway.store.db import make_engine, make_session_factory
from crm_gateway.store.models import CustomerRecord
from crm_gateway.vault.records import reveal
from tests.conftest import deploy_unless_embedded
from tests.importer.conftest import grant_steward, settings_env
from tests.importer.csvgen import Expected, check_report, generate, no_personal_data

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def _check_chain_and_vault(runtime: Runtime, expected: Expected) -> None:
    ids = {
        "0x" + runtime.indexer.customer_id(email_index_form(p.email)).hex(): p
        for p in expected.people
    }
    assert len(ids) == len(expected.people)
    registry = runtime.contracts["CustomerRegistry"]
    w3 = runtime.chain.w3
    topic = w3.keccak(text="CustomerRegistered(bytes32,uint64,bytes32)")
    logs = w3.eth.get_logs(
        {"address": registry.address, "fromBlock": 0, "toBlock": "latest", "topics": [topic]}
    )
    registered = Counter("0x" + bytes(log["topics"][1]).hex() for log in logs)
    assert set(registered) == set(ids)
    assert set(registered.values()) == {1}  # nobody registered twice

    order = sorted(ids)
    states = call_many(w3, registry, "customer", [(bytes.fromhex(i[2:]),) for i in order])
    assert {(int(status), int(holders)) for status, _at, _wallet, holders in states} == {(1, 1)}
    held = call_many(w3, registry, "isHolder", [(bytes.fromhex(i[2:]), 1) for i in order])
    assert all(is_held for (is_held,) in held)

    with runtime.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(CustomerRecord)) == len(ids)
        for record in session.scalars(select(CustomerRecord)):
            revealed = reveal(
                store.sealed_of(record),
                customer_id=bytes.fromhex(record.customer_id[2:]),
                version=record.version,
                org_id=record.org_id,
                provider=runtime.vault,
            )
            profile = CustomerProfile.from_canonical(revealed.canonical)
            person = ids[record.customer_id]
            assert profile.email_index == person.email.lower()
            assert profile.phone == person.phone_e164
            assert to_hex(revealed.commitment) == record.commitment


def to_hex(value: bytes) -> str:
    return "0x" + value.hex()


def test_ten_thousand_rows_with_duplicates_and_invalid_rows(
    cli_env: CliRunner, node: Any, anvil_settings: Settings, tmp_path: Path
) -> None:
    deployed = cli_env.invoke(app, ["deploy"])
    assert deployed.exit_code == 0, deployed.output
    record = json.loads(
        (anvil_settings.path(anvil_settings.deployments_dir) / "31337.json").read_text()
    )
    granted = cli_env.invoke(app, ["roles", "grant", "DATA_STEWARD", record["deployer"]])
    assert granted.exit_code == 0, granted.output
    expected = generate(tmp_path / "crm.csv", 10_000, us_every=4)  # a quarter in national US form
    assert (len(expected.duplicates), len(expected.invalid)) == (500, 200)

    result = cli_env.invoke(
        app, ["import", str(tmp_path / "crm.csv"), "--report", str(tmp_path / "report.json")]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    check_report(report, expected)
    assert report["counts"]["imported"] == 9300
    assert report["on_chain"]["registered"] == 9300
    assert report["ignored_columns"] == ["LeadSource"]
    no_personal_data(result.output, expected)
    print(
        f"\n10,000 rows on Anvil: {report['elapsed_seconds']} s, {report['rows_per_second']} rows/s"
    )

    runtime = build_runtime(anvil_settings)
    try:
        _check_chain_and_vault(runtime, expected)
    finally:
        runtime.close()


def test_killed_half_way_and_run_again_registers_each_person_once(
    anvil_settings: Settings, node: Any, tmp_path: Path
) -> None:
    deploy_unless_embedded(anvil_settings)
    runtime = build_runtime(anvil_settings)
    try:
        grant_steward(runtime)
    finally:
        runtime.close()
    expected = generate(tmp_path / "crm.csv", 4_000, seed=11)
    env = {**os.environ, **settings_env(anvil_settings), "COLUMNS": "200"}

    def command(report: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "crm_gateway.cli",
            "import",
            str(tmp_path / "crm.csv"),
            "--batch-size",
            "50",
            "--report",
            str(tmp_path / report),
        ]

    log = tmp_path / "first.log"
    with log.open("wb") as output:
        first = subprocess.Popen(
            command("first.json"), env=env, stdout=output, stderr=subprocess.STDOUT
        )
    sessions = make_session_factory(make_engine(anvil_settings.database_url))
    half = len(expected.people) // 2
    deadline = time.monotonic() + 120
    try:
        while True:
            assert first.poll() is None, "finished before the kill:\n" + log.read_text()[-2000:]
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            with sessions() as session:
                sealed = session.scalar(select(func.count()).select_from(CustomerRecord)) or 0
            if sealed >= half:
                break
            time.sleep(0.02)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert not (tmp_path / "first.json").exists()

    second = subprocess.run(
        command("second.json"), env=env, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stdout + second.stderr
    report = json.loads((tmp_path / "second.json").read_text())
    check_report(report, expected)
    assert report["counts"]["already_imported"] >= half
    assert report["counts"]["imported"] > 0
    no_personal_data(second.stdout + second.stderr, expected)

    runtime = build_runtime(anvil_settings)
    try:
        _check_chain_and_vault(runtime, expected)
    finally:
        runtime.close()
