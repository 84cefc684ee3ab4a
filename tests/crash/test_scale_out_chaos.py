"""Three gateways of one organisation on one PostgreSQL, a CLI import beside them, and chaos.

Clients send a mixed load (relayed consent changes, loyalty earns, customer registrations, role
grants) to whichever gateway answers, each request with an idempotency key and, like any real
client, retried with the same key when it got no answer. Meanwhile a random gateway is killed with
SIGKILL every few seconds (and started again), Anvil is killed twice (and restarted from its state
file, losing its last blocks), and `crm-chaincode import` runs until it has finished (run again
after a failure, as its message says). Afterwards, counted from the chain's own events, every
acknowledged write is on the chain exactly once: no consent change, earn, registration or grant
twice, no batch twice (no `RegistrationSkipped` on this fresh chain), none lost.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_utils.crypto import keccak

from bench.consents import MARKETING, signed_change
from bench.population import Populator
from crm_gateway.chain.anvil import AnvilNode
from crm_gateway.chain.artifacts import Artifacts
from crm_gateway.chain.connection import Chain, connect
from crm_gateway.chain.membership import join_organization_typed_data, sign_join
from crm_gateway.config import ChainKind, Settings, settings_environment
from crm_gateway.runtime import deploy, open_keystore
from crm_gateway.services.access import Role
from tests.conftest import free_port, make_settings
from tests.e2e.gateway_process import GatewayProcess, api_key, ok
from tests.importer.csvgen import generate

pytestmark = [pytest.mark.anvil, pytest.mark.postgres, pytest.mark.slow]

GATEWAYS = 3
CUSTOMERS = 16  # with wallets: one consent change and one earn each
REGISTRATIONS = 20
GRANTS = 16
IMPORT_ROWS = 180
KILL_EVERY_SECONDS = 3.0
NODE_KILLS_AT = (5.0, 13.0)  # seconds into the load
CHAOS_SECONDS = 18.0


def _settings(root: Path, database_url: str, anvil_port: int, anvil_state: Path) -> Settings:
    return make_settings(
        root,
        chain_kind=ChainKind.ANVIL,
        anvil_port=anvil_port,
        anvil_state_file=anvil_state,
        database_url=database_url,
        keystore_dir=root.parent / "keystore",  # one organisation: one keystore, one keyring
        vault_keyring_file=root.parent / "vault" / "keyring.json",
        deployments_dir=root.parent / "deployments",
        gateway_port=free_port(),
        finality_seconds=3.0,
        resubmit_after_seconds=1.0,
        lease_seconds=2.0,
        log_level="warning",
    )


class Cluster:
    def __init__(self, tmp_path: Path, database_url: str) -> None:
        anvil_port = free_port()
        state = tmp_path / "anvil" / "state.json"
        self.settings = [
            _settings(tmp_path / f"gw{i}", database_url, anvil_port, state) for i in range(GATEWAYS)
        ]
        self.node = AnvilNode(self.settings[0])
        self.gateways = [
            GatewayProcess(s, tmp_path / f"gw{i}" / "gateway.log")
            for i, s in enumerate(self.settings)
        ]
        self._lock = threading.Lock()

    def live(self) -> list[GatewayProcess]:
        with self._lock:
            return [g for g in self.gateways if g.process and g.process.poll() is None]

    def restart(self, gateway: GatewayProcess) -> None:
        with self._lock:
            gateway.kill()
            gateway.start()


def _post(cluster: Cluster, key: str, path: str, body: Any, idempotency: str) -> dict[str, Any]:
    """POST to a random live gateway until one acknowledges it (same idempotency key)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        live = cluster.live()
        if not live:
            time.sleep(0.1)
            continue
        gateway = random.choice(live)
        try:
            with gateway.client(key) as http:
                response = http.post(path, json=body, headers={"Idempotency-Key": idempotency})
        except httpx.HTTPError:
            time.sleep(0.05)
            continue
        if response.status_code in (502, 503):
            time.sleep(0.1)
            continue
        assert response.status_code in (200, 201, 202), f"{path}: {response.text}"
        return dict(response.json())
    raise AssertionError(f"no gateway acknowledged {path} {idempotency}")


def _operation_id(answer: dict[str, Any]) -> str:
    return str(answer["operation"]["id"] if "operation" in answer else answer["id"])


def _wait_settled(cluster: Cluster, key: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    settled: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and len(settled) < len(ids):
        gateway = random.choice(cluster.live())
        try:
            with gateway.client(key) as http:
                for operation_id in ids:
                    if operation_id in settled:
                        continue
                    body = http.get(f"/v1/operations/{operation_id}").json()
                    if body.get("status") in ("confirmed", "failed"):
                        settled[operation_id] = body
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    missing = [i for i in ids if i not in settled]
    assert not missing, f"{len(missing)} acknowledged writes never settled"
    return settled


def _events(chain: Chain, contract: Any, name: str) -> list[dict[str, Any]]:
    return [dict(log["args"]) for log in contract.events[name]().get_logs(from_block=0)]


@pytest.fixture
def cluster(tmp_path: Path, postgres_schema_url: str) -> Iterator[Cluster]:
    built = Cluster(tmp_path, postgres_schema_url)
    built.node.start()
    try:
        yield built
    finally:
        for gateway in built.gateways:
            gateway.stop()
        built.node.stop()


def test_three_gateways_an_import_and_chaos_write_everything_exactly_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    t0 = time.monotonic()

    def phase(name: str) -> None:
        print(f"{time.monotonic() - t0:6.1f}s {name}")

    settings = cluster.settings[0]
    chain = connect(settings)
    record = deploy(settings, chain, open_keystore(settings)).record
    artifacts = Artifacts(settings.path(settings.abi_dir))

    def contract(name: str) -> Any:
        return chain.w3.eth.contract(
            address=record.contracts[name].address, abi=artifacts[name].abi
        )

    keystore = open_keystore(settings)
    admin = str(record.deployer)
    relayer, merchant, steward = (keystore.create().address for _ in range(3))
    populator = Account.create()  # sets customers up straight on the chain, outside the keystore
    for account in (relayer, merchant, steward, populator.address):
        chain.dev_fund(account, 10**22)
    keys = {
        "admin": api_key(settings, 1, admin, "ORG_ADMIN"),
        "relayer": api_key(settings, 1, relayer, "RELAYER"),
        "merchant": api_key(settings, 1, merchant, "MERCHANT"),
        "steward": api_key(settings, 1, steward, "DATA_STEWARD"),
    }
    for gateway in cluster.gateways:
        gateway.start()
    for gateway in cluster.gateways:
        gateway.wait_ready()

    phase("gateways ready")
    first = cluster.gateways[0]
    # The populator's key is not in the keystore: it joins with its own JoinOrganization signature.
    deadline = int(time.time()) + 3600
    join = join_organization_typed_data(
        chain_id=chain.chain_id,
        consortium=record.contracts["Consortium"].address,
        account=populator.address,
        org_id=1,
        role=Role.DATA_STEWARD.role_id,
        nonce=int(contract("Consortium").functions.membershipNonces(populator.address).call()),
        deadline=deadline,
    )
    populator_join = {"deadline": deadline, "signature": sign_join(populator, join)}
    with first.client(keys["admin"]) as http:
        for role, account, signed in (
            ("RELAYER", relayer, {}),
            ("MERCHANT", merchant, {}),
            ("DATA_STEWARD", steward, {}),
            ("DATA_STEWARD", populator.address, populator_join),
        ):
            body = {"role": role, "account": account, **signed}
            ok(http.post("/v1/roles/grants?wait=true", json=body))
        ok(
            http.post(
                "/v1/purposes?wait=true",
                json={"purpose": MARKETING, "lawful_basis": "consent", "notice_text": "Mail."},
            )
        )
    people = Populator(
        chain.w3, populator, contract("CustomerRegistry"), chain.chain_id
    ).customers_with_wallets(CUSTOMERS)
    phase("set up")
    time.sleep(2)  # the read model takes in the grants, the purpose and the wallets

    # --- the load -----------------------------------------------------------------------
    requests: list[tuple[str, str, Any, str]] = []
    ledger = record.contracts["ConsentLedger"].address
    for i, person in enumerate(people):
        change = signed_change(person, chain_id=chain.chain_id, ledger=ledger, nonce=0)
        requests.append(("relayer", "/v1/consents", change, f"consent-{i}"))
        earn = {"customer_id": person.customer_id, "amount": 10, "reason": f"chaos-earn-{i}"}
        requests.append(("merchant", "/v1/loyalty/earn", earn, f"earn-{i}"))
    emails = [f"chaos.{i}@example.com" for i in range(REGISTRATIONS)]
    for i, email in enumerate(emails):
        requests.append(("steward", "/v1/customers", {"email": email}, f"register-{i}"))
    # New accounts of the keystore: the gateways sign each one's join (usable once).
    agents = [keystore.create().address for _ in range(GRANTS)]
    for i, agent in enumerate(agents):
        grant = {"role": "AGENT", "account": agent}
        requests.append(("admin", "/v1/roles/grants", grant, f"grant-{i}"))
    random.Random(3).shuffle(requests)

    acknowledged: dict[str, tuple[str, dict[str, Any]]] = {}
    registered_ids: dict[str, str] = {}
    lock = threading.Lock()
    todo = list(requests)
    errors: list[BaseException] = []

    def client() -> None:
        try:
            while True:
                with lock:
                    if not todo:
                        return
                    who, path, body, idempotency = todo.pop()
                answer = _post(cluster, keys[who], path, body, idempotency)
                with lock:
                    acknowledged[idempotency] = (who, answer)
                    if path == "/v1/customers":
                        registered_ids[idempotency] = answer["customer_id"]
                time.sleep(0.05)
        except BaseException as exc:
            errors.append(exc)

    stop = threading.Event()

    def chaos() -> None:
        rng = random.Random(11)
        started = time.monotonic()
        node_kills = list(NODE_KILLS_AT)
        next_kill = started + KILL_EVERY_SECONDS
        while not stop.is_set() and time.monotonic() - started < CHAOS_SECONDS:
            now = time.monotonic()
            if node_kills and now - started >= node_kills[0]:
                node_kills.pop(0)
                cluster.node.kill()
                cluster.node.start()
            if now >= next_kill:
                next_kill = now + KILL_EVERY_SECONDS
                cluster.restart(rng.choice(cluster.gateways))
            time.sleep(0.05)

    importer_done: list[int] = []

    def run_import() -> None:
        generate(tmp_path / "import.csv", IMPORT_ROWS, seed=9, duplicate_rate=0, invalid_rate=0)
        for attempt in range(6):
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "crm_gateway.cli",
                    "import",
                    str(tmp_path / "import.csv"),
                    "--as",
                    steward,
                    "--batch-size",
                    "30",
                ],
                env=settings_environment(settings, COLUMNS="200", WAIT_TIMEOUT_SECONDS="20"),
                capture_output=True,
                text=True,
                timeout=180,
            )
            if result.returncode == 0:
                importer_done.append(attempt + 1)
                return
            time.sleep(1)
        errors.append(AssertionError("the import never finished:\n" + result.stderr[-2000:]))

    threads = [threading.Thread(target=client) for _ in range(6)]
    threads.append(threading.Thread(target=run_import))
    chaos_thread = threading.Thread(target=chaos)
    chaos_thread.start()
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join(timeout=240)
            assert not thread.is_alive()
        chaos_thread.join(timeout=60)
    finally:
        stop.set()
        chaos_thread.join(timeout=60)
    phase(f"load acknowledged, import runs: {importer_done}")
    assert not errors, errors
    assert importer_done, "the import never finished"
    for gateway in cluster.gateways:  # everyone up again for the settling
        if gateway.process is None or gateway.process.poll() is not None:
            gateway.start()
    for gateway in cluster.gateways:
        gateway.wait_ready()

    assert len(acknowledged) == len(requests)
    ids = [_operation_id(answer) for _who, answer in acknowledged.values()]
    phase("gateways up again")
    settled = _wait_settled(cluster, keys["admin"], ids)
    phase("settled")
    refused = {i: s["error"] for i, s in settled.items() if s["status"] != "confirmed"}
    assert not refused, refused

    # --- counted from the chain's own events ------------------------------------------------
    changed = Counter(
        "0x" + bytes(e["customerId"]).hex()
        for e in _events(chain, contract("ConsentLedger"), "ConsentChanged")
    )
    assert changed == Counter({person.customer_id: 1 for person in people})
    assert _events(chain, contract("ConsentLedger"), "ConsentChangeRejected") == []

    earned = Counter(
        "0x" + bytes(e["reason"]).hex()
        for e in _events(chain, contract("LoyaltyPoints"), "PointsEarned")
    )
    assert earned == Counter(
        {"0x" + keccak(text=f"chaos-earn-{i}").hex(): 1 for i in range(len(people))}
    )  # no double mint, none lost

    registry = contract("CustomerRegistry")
    registered = Counter(
        "0x" + bytes(e["customerId"]).hex() for e in _events(chain, registry, "CustomerRegistered")
    )
    assert set(registered.values()) == {1}  # nobody twice
    assert set(registered_ids.values()) <= set(registered)  # every acknowledged registration
    populated = {person.customer_id for person in people}
    assert len(registered) == len(people) + REGISTRATIONS + IMPORT_ROWS
    assert populated <= set(registered)
    assert _events(chain, registry, "RegistrationSkipped") == []  # no batch sent twice

    granted = Counter(
        str(e["account"]) for e in _events(chain, contract("Consortium"), "RoleGranted")
    )
    for agent in agents:
        assert granted[agent] == 1
