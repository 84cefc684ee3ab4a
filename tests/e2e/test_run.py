"""`crm-chaincode run` (what `make run` calls): Anvil + migrations + gateway, and a second run
that finds the same chain and deploys nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_SCRYPT_N, free_port

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


def _start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any], float]:
    started = time.monotonic()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "crm_gateway.cli", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{env['GATEWAY_PORT']}/readyz"
    while time.monotonic() - started < 90:
        assert process.poll() is None, log.read_text()
        try:
            response = httpx.get(url, timeout=1)
            if response.status_code == 200:
                return process, response.json(), time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError("not ready within 90 s:\n" + log.read_text())


def _interrupt(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=20)


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_run_serves_readyz_and_a_second_run_reuses_the_chain(tmp_path: Path) -> None:
    anvil_port, gateway_port = free_port(), free_port()
    env = {
        **os.environ,
        "CHAIN_KIND": "anvil",
        "ANVIL_PORT": str(anvil_port),
        "ANVIL_STATE_FILE": str(tmp_path / "anvil" / "state.json"),
        "GATEWAY_PORT": str(gateway_port),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'crm.db'}",
        "KEYSTORE_DIR": str(tmp_path / "keystore"),
        "KEYSTORE_SCRYPT_N": str(TEST_SCRYPT_N),
        "DEPLOYMENTS_DIR": str(tmp_path / "deployments"),
    }
    log = tmp_path / "run.log"

    first, ready, seconds = _start(env, log)
    assert seconds < 90
    assert ready["chain"] == {
        "kind": "anvil",
        "chain_id": 31337,
        "latest_block": ready["chain"]["latest_block"],
    }
    address = ready["contracts"]["Consortium"]
    block = ready["chain"]["latest_block"]
    assert httpx.get(f"http://127.0.0.1:{gateway_port}/docs").status_code == 200
    assert _interrupt(first) == 0
    assert _port_is_free(anvil_port), "Ctrl-C must stop Anvil too"
    assert _port_is_free(gateway_port)

    second, ready_again, _ = _start(env, log)
    try:
        assert ready_again["contracts"]["Consortium"] == address
        assert ready_again["chain"]["latest_block"] == block, "a second run must send nothing"
        assert "nothing to deploy" in log.read_text()
    finally:
        assert _interrupt(second) == 0
