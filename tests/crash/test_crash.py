"""Nothing acknowledged is lost: SIGKILL the gateway (twice) and the node (once) under load.

Clients submit 200 writes with idempotency keys and, like any real client, retry a request that
got no answer with the same key. The gateway process is killed with SIGKILL twice and restarted,
and Anvil is killed once and restarted from its state file (losing up to its last state interval).
Afterwards every acknowledged write is on-chain exactly once. Two scenarios: role grants (one
transaction each) and customer registrations from concurrent clients (batched by the pipeline,
several registrations per `registerBatch` transaction).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from crm_gateway.chain.artifacts import Artifacts
from crm_gateway.chain.connection import connect
from crm_gateway.config import ChainKind, Settings
from crm_gateway.runtime import deploy, open_keystore
from crm_gateway.services.access import Role
from crm_gateway.store.db import make_engine, make_session_factory
from crm_gateway.store.models import Operation
from tests.conftest import free_port, make_settings
from tests.e2e.gateway_process import GatewayProcess, api_key, ok

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

WRITES = 200
GATEWAY_KILLS_AFTER = (60, 130)
NODE_KILL_AFTER = 95


@pytest.fixture
def crash_settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path,
        chain_kind=ChainKind.ANVIL,
        anvil_port=free_port(),
        gateway_port=free_port(),
        finality_seconds=3.0,
        resubmit_after_seconds=1.0,
        # The restarted gateway takes over the killed one's leases (signing, watching) this
        # soon after its last renewal.
        lease_seconds=2.0,
        log_level="warning",
    )


@pytest.fixture
def node(crash_settings: Settings) -> Iterator[Any]:
    from crm_gateway.chain.anvil import AnvilNode

    anvil = AnvilNode(crash_settings)
    anvil.start()
    yield anvil
    anvil.stop()


class Scenario:
    """What the clients send, and how to count on the chain what each write did."""

    def __init__(self, name: str, concurrency: int) -> None:
        self.name = name
        self.concurrency = concurrency
        #: The grants' accounts: new accounts of the gateway's keystore, so the gateway signs
        #: each one's consent to join (a JoinOrganization signature, usable once).
        self.accounts: list[str] = []

    def request(self, i: int) -> tuple[str, dict[str, Any]]:
        if self.name == "grants":
            return "/v1/roles/grants", {"role": "AGENT", "account": self.accounts[i]}
        return "/v1/customers", {"email": f"person{i}@example.com", "given_name": "Crash"}


def _submit_all(
    gateway: GatewayProcess, key: str, scenario: Scenario, acknowledged: dict[int, dict[str, Any]]
) -> None:
    lock = threading.Lock()
    todo = list(range(WRITES))

    def client() -> None:
        with httpx.Client(base_url=gateway.url, headers={"X-API-Key": key}, timeout=10) as http:
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop(0)
                path, body = scenario.request(i)
                while True:
                    try:
                        response = http.post(path, json=body, headers={"Idempotency-Key": f"w-{i}"})
                    except httpx.HTTPError:
                        time.sleep(0.05)
                        continue
                    if response.status_code in (502, 503):
                        time.sleep(0.05)
                        continue
                    assert response.status_code in (200, 201, 202), response.text
                    with lock:
                        acknowledged[i] = response.json()
                    break

    threads = [threading.Thread(target=client) for _ in range(scenario.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
        assert not thread.is_alive()


def _chaos(
    gateway: GatewayProcess, node: Any, done: Callable[[], int], stop: threading.Event
) -> threading.Thread:
    def run() -> None:
        kills = list(GATEWAY_KILLS_AFTER)
        node_killed = False
        while not stop.is_set() and (kills or not node_killed):
            if kills and done() >= kills[0]:
                kills.pop(0)
                gateway.kill()
                gateway.start()
                gateway.wait_ready()
            elif not node_killed and done() >= NODE_KILL_AFTER:
                node_killed = True
                node.kill()
                node.start()
            time.sleep(0.005)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _operation_id(response: dict[str, Any]) -> str:
    return str(response["operation"]["id"] if "operation" in response else response["id"])


def _wait_until_settled(gateway: GatewayProcess, key: str, ids: list[str]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 120
    settled: dict[str, Any] = {}
    with gateway.client(key) as client:
        while time.monotonic() < deadline and len(settled) < len(ids):
            for operation_id in ids:
                if operation_id not in settled:
                    body = client.get(f"/v1/operations/{operation_id}").json()
                    if body["status"] in ("confirmed", "failed"):
                        settled[operation_id] = body
            time.sleep(0.2)
    assert len(settled) == len(ids), "some acknowledged writes never settled"
    return list(settled.values())


@pytest.mark.parametrize(
    "scenario",
    [Scenario("grants", concurrency=1), Scenario("registrations", concurrency=8)],
    ids=lambda s: s.name,
)
def test_every_acknowledged_write_is_on_chain_exactly_once(
    crash_settings: Settings, node: Any, tmp_path: Path, scenario: Scenario
) -> None:
    chain = connect(crash_settings)
    record = deploy(crash_settings, chain, open_keystore(crash_settings)).record
    admin = str(record.deployer)
    key = api_key(crash_settings, 1, admin, "ORG_ADMIN")
    if scenario.name == "grants":
        keystore = open_keystore(crash_settings)
        scenario.accounts = [keystore.create().address for _ in range(WRITES)]
    gateway = GatewayProcess(crash_settings, tmp_path / "gateway.log")
    gateway.start()
    gateway.wait_ready()
    if scenario.name == "registrations":
        with gateway.client(key) as client:
            ok(
                client.post(
                    "/v1/roles/grants?wait=true", json={"role": "DATA_STEWARD", "account": admin}
                )
            )

    acknowledged: dict[int, dict[str, Any]] = {}
    stop = threading.Event()
    chaos = _chaos(gateway, node, lambda: len(acknowledged), stop)
    try:
        _submit_all(gateway, key, scenario, acknowledged)
        chaos.join(timeout=120)
        assert not chaos.is_alive()
        settled = _wait_until_settled(
            gateway, key, [_operation_id(a) for a in acknowledged.values()]
        )
        assert {s["status"] for s in settled} == {"confirmed"}, settled
    finally:
        stop.set()
        gateway.stop()

    assert len(acknowledged) == WRITES
    artifacts = Artifacts(crash_settings.path(crash_settings.abi_dir))
    if scenario.name == "grants":
        consortium = chain.w3.eth.contract(
            address=record.contracts["Consortium"].address, abi=artifacts["Consortium"].abi
        )
        grants = _grant_transactions(chain.w3, consortium, admin)
        for account in scenario.accounts:
            assert grants.get(account) == 1, account
            assert consortium.functions.hasRole(Role.AGENT.role_id, account).call()
        assert sum(grants.values()) == WRITES
        return

    registry = chain.w3.eth.contract(
        address=record.contracts["CustomerRegistry"].address, abi=artifacts["CustomerRegistry"].abi
    )
    registered = [
        dict(e["args"]) for e in registry.events.CustomerRegistered().get_logs(from_block=0)
    ]
    skipped = registry.events.RegistrationSkipped().get_logs(from_block=0)
    ids = sorted("0x" + bytes(e["customerId"]).hex() for e in registered)
    expected = sorted(a["customer_id"] for a in acknowledged.values())
    assert ids == expected, "every acknowledged customer registered exactly once"
    assert skipped == [], "no registration was sent twice"
    engine = make_engine(crash_settings.database_url)
    with make_session_factory(engine)() as session:
        per_tx = (
            session.execute(
                select(func.count())
                .select_from(Operation)
                .where(Operation.kind == "customers.register")
                .group_by(Operation.chain_tx_id)
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert max(per_tx) > 1, "concurrent registrations were batched"
    print(f"registrations: {WRITES} in {len(per_tx)} transactions (largest batch {max(per_tx)})")


def _grant_transactions(w3: Any, consortium: Any, sender: str) -> dict[str, int]:
    """How many mined transactions granted a role to each account (scanning every block): by
    `grantRole` to a member, by `grantRoleBySig` with the account's consent to join."""
    counts: dict[str, int] = {}
    for number in range(w3.eth.block_number + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["from"] != sender or tx["to"] != consortium.address:
                continue
            function, arguments = consortium.decode_function_input(tx["input"])
            if function.fn_name in ("grantRole", "grantRoleBySig"):
                receipt = w3.eth.get_transaction_receipt(tx["hash"])
                if receipt["status"] == 1:
                    counts[arguments["account"]] = counts.get(arguments["account"], 0) + 1
    return counts
