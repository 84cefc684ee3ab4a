"""Nothing acknowledged is lost: SIGKILL the gateway (twice) and the node (once) under load.

A client submits 200 role grants with idempotency keys and, like any real client, retries a
request that got no answer with the same key. The gateway process is killed with SIGKILL twice and
restarted, and Anvil is killed once and restarted from its state file (losing up to its last state
interval). Afterwards every acknowledged grant is on-chain exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account

from crm_gateway.chain.connection import connect
from crm_gateway.config import ChainKind, Settings
from crm_gateway.runtime import deploy, open_keystore
from crm_gateway.security.apikeys import create_api_key
from crm_gateway.services.access import Role
from crm_gateway.store.db import make_engine, make_session_factory, upgrade_database
from tests.conftest import free_port, make_settings

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

GRANTS = 200
GATEWAY_KILLS_AFTER = (60, 130)
NODE_KILL_AFTER = 95


def _environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name in (
        "chain_kind",
        "anvil_port",
        "anvil_state_file",
        "database_url",
        "keystore_dir",
        "keystore_scrypt_n",
        "deployments_dir",
        "gateway_port",
        "finality_seconds",
        "resubmit_after_seconds",
        "sender_poll_seconds",
        "watcher_poll_seconds",
    ):
        env[name.upper()] = str(getattr(settings, name))
    env["LOG_LEVEL"] = "warning"
    return env


class Gateway:
    """The gateway as a separate process, so it can really be killed."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.gateway_port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "crm_gateway.cli", "serve"],
                env=_environment(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("gateway did not become ready:\n" + self.log.read_text()[-3000:])

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def crash_settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path,
        chain_kind=ChainKind.ANVIL,
        anvil_port=free_port(),
        gateway_port=free_port(),
        finality_seconds=3.0,
        resubmit_after_seconds=1.0,
    )


@pytest.fixture
def node(crash_settings: Settings) -> Iterator[Any]:
    from crm_gateway.chain.anvil import AnvilNode

    anvil = AnvilNode(crash_settings)
    anvil.start()
    yield anvil
    anvil.stop()


def test_every_acknowledged_grant_is_on_chain_exactly_once(
    crash_settings: Settings, node: Any, tmp_path: Path
) -> None:
    chain = connect(crash_settings)
    keystore = open_keystore(crash_settings)
    record = deploy(crash_settings, chain, keystore).record
    admin = str(record.deployer)
    upgrade_database(crash_settings.database_url)
    with make_session_factory(make_engine(crash_settings.database_url))() as session:
        _key, api_key = create_api_key(session, org_id=1, account=admin, role="ORG_ADMIN")
        session.commit()

    gateway = Gateway(crash_settings, tmp_path / "gateway.log")
    gateway.start()
    accounts = [Account.create().address for _ in range(GRANTS)]
    acknowledged: dict[int, str] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def chaos() -> None:
        kills = list(GATEWAY_KILLS_AFTER)
        node_killed = False
        while not stop.is_set() and (kills or not node_killed):
            with lock:
                done = len(acknowledged)
            if kills and done >= kills[0]:
                kills.pop(0)
                gateway.kill()
                gateway.start()
            elif not node_killed and done >= NODE_KILL_AFTER:
                node_killed = True
                node.kill()
                node.start()
            time.sleep(0.005)

    killer = threading.Thread(target=chaos)
    killer.start()
    try:
        with httpx.Client(
            base_url=gateway.url, headers={"X-API-Key": api_key}, timeout=5
        ) as client:
            for i, account in enumerate(accounts):
                while True:
                    try:
                        response = client.post(
                            "/v1/roles/grants",
                            json={"role": "AGENT", "account": account},
                            headers={"Idempotency-Key": f"grant-{i}"},
                        )
                    except httpx.HTTPError:
                        time.sleep(0.05)
                        continue
                    if response.status_code in (502, 503):
                        time.sleep(0.05)
                        continue
                    assert response.status_code in (200, 202), response.text
                    with lock:
                        acknowledged[i] = response.json()["id"]
                    break
        killer.join(timeout=120)
        assert not killer.is_alive()

        settled = _wait_until_settled(gateway.url, api_key, acknowledged)
        assert {s["status"] for s in settled.values()} == {"confirmed"}, settled
    finally:
        stop.set()
        gateway.stop()

    consortium = chain.w3.eth.contract(
        address=record.contracts["Consortium"].address,
        abi=record_abi(crash_settings),
    )
    grants_per_account = _grant_transactions(chain.w3, consortium, admin)
    assert len(acknowledged) == GRANTS
    for account in accounts:
        assert grants_per_account.get(account) == 1, account
        assert consortium.functions.hasRole(Role.AGENT.role_id, account).call()
    assert sum(grants_per_account.values()) == GRANTS


def record_abi(settings: Settings) -> Any:
    from crm_gateway.chain.artifacts import Artifacts

    return Artifacts(settings.path(settings.abi_dir))["Consortium"].abi


def _wait_until_settled(url: str, api_key: str, operations: dict[int, str]) -> dict[int, Any]:
    deadline = time.monotonic() + 90
    settled: dict[int, Any] = {}
    with httpx.Client(base_url=url, headers={"X-API-Key": api_key}, timeout=5) as client:
        while time.monotonic() < deadline and len(settled) < len(operations):
            for i, operation_id in operations.items():
                if i not in settled:
                    body = client.get(f"/v1/operations/{operation_id}").json()
                    if body["status"] in ("confirmed", "failed"):
                        settled[i] = body
            time.sleep(0.2)
    assert len(settled) == len(operations), "some acknowledged writes never settled"
    return settled


def _grant_transactions(w3: Any, consortium: Any, sender: str) -> dict[str, int]:
    """How many mined transactions granted a role to each account (scanning every block)."""
    counts: dict[str, int] = {}
    for number in range(w3.eth.block_number + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["from"] != sender or tx["to"] != consortium.address:
                continue
            function, arguments = consortium.decode_function_input(tx["input"])
            if function.fn_name == "grantRole":
                receipt = w3.eth.get_transaction_receipt(tx["hash"])
                if receipt["status"] == 1:
                    counts[arguments["account"]] = counts.get(arguments["account"], 0) + 1
    return counts
