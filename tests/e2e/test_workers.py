"""`crm-chaincode serve --workers 2`: two API processes, the background work once, and failover.

Both worker processes serve; the watcher and the indexer run in one of them (the holder of their
lease in the database). SIGKILL that one: the other takes the work over once the lease expires,
and writes keep confirming.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from crm_gateway.chain.anvil import AnvilNode
from crm_gateway.chain.connection import connect
from crm_gateway.config import ChainKind, Settings
from crm_gateway.runtime import deploy, open_keystore
from crm_gateway.store.db import make_engine, make_session_factory
from crm_gateway.store.models import Lease
from tests.conftest import free_port, make_settings
from tests.e2e.gateway_process import GatewayProcess, api_key, ok

pytestmark = [pytest.mark.anvil, pytest.mark.slow]


class WorkersProcess(GatewayProcess):
    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "crm_gateway.cli", "serve", "--workers", "2"],
                env=self.env,
                cwd=self.log.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
            )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path,
        chain_kind=ChainKind.ANVIL,
        anvil_port=free_port(),
        gateway_port=free_port(),
        lease_seconds=2.0,
        log_level="warning",
    )


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[tuple[WorkersProcess, str]]:
    node = AnvilNode(settings)
    node.start()
    try:
        record = deploy(settings, connect(settings), open_keystore(settings)).record
        key = api_key(settings, 1, str(record.deployer), "ORG_ADMIN")
        with WorkersProcess(settings, tmp_path / "gateway" / "gateway.log") as gateway:
            gateway.wait_ready()
            yield gateway, key
    finally:
        node.stop()


def _holders(settings: Settings) -> dict[str, str]:
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            now = time.time()
            return {
                lease.name: lease.holder
                for lease in session.scalars(select(Lease))
                if lease.expires_at.timestamp() > now
            }
    finally:
        engine.dispose()


def _grant(settings: Settings, gateway: GatewayProcess, key: str) -> None:
    """An AGENT grant to a new account of the gateway's keystore (the gateway signs its join)."""
    account = open_keystore(settings).create().address
    with gateway.client(key) as http:
        body = {"role": "AGENT", "account": account}
        answer = ok(http.post("/v1/roles/grants?wait=true", json=body))
    assert answer["status"] == "confirmed", answer


def test_two_workers_serve_and_the_background_work_fails_over(
    settings: Settings, served: tuple[WorkersProcess, str]
) -> None:
    gateway, key = served
    for _ in range(4):
        _grant(settings, gateway, key)
    holders = _holders(settings)
    assert {"watcher", "indexer"} <= set(holders)
    leader = int(holders["watcher"].split(":")[1])
    assert gateway.process is not None
    assert leader != gateway.process.pid  # a worker process, not uvicorn's supervisor

    os.kill(leader, signal.SIGKILL)
    time.sleep(0.5)
    deadline = time.monotonic() + 60
    while True:  # the surviving worker answers at once; the killed one is replaced
        try:
            _grant(settings, gateway, key)
            break
        except (AssertionError, httpx.HTTPError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    now_holders = _holders(settings)
    assert int(now_holders["watcher"].split(":")[1]) != leader
