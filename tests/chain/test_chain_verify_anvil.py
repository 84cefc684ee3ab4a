"""`chain verify` on a real Anvil kept in one state file: no alarm after clean restarts and
SIGKILLs, and each real break (a different genesis, an edited deployment record, code missing at
a recorded address) named in one sentence."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_gateway.audit.chain_check import verify_chain
from crm_gateway.chain.anvil import AnvilNode
from crm_gateway.chain.connection import connect
from crm_gateway.chain.deployments import DeploymentRecord
from crm_gateway.chain.genesis import genesis_hash
from crm_gateway.config import ChainKind, Settings
from crm_gateway.runtime import deploy, deployment_store, open_keystore
from tests.conftest import free_port, make_settings

pytestmark = pytest.mark.anvil


def rpc(url: str, method: str, *params: Any) -> Any:
    body = httpx.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=5
    ).json()
    assert "error" not in body, body
    return body["result"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path, chain_kind=ChainKind.ANVIL, anvil_port=free_port(), anvil_state_interval_seconds=1
    )


@pytest.fixture
def deployed(settings: Settings) -> Iterator[AnvilNode]:
    """A deployed Anvil whose deployment is in its state file (so a SIGKILL keeps it)."""
    node = AnvilNode(settings).start()
    try:
        deploy(settings, connect(settings), open_keystore(settings))
        _wait_for_dump(node, int(rpc(node.url, "eth_blockNumber"), 16))
        yield node
    finally:
        if node.is_running:
            node.stop()


def _wait_for_dump(node: AnvilNode, block: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            dumped = json.loads(node.state_file.read_text())["best_block_number"]
        except (OSError, ValueError, KeyError):
            dumped = None
        if dumped is not None and int(str(dumped), 0) >= block:
            return
        time.sleep(0.1)
    raise AssertionError(f"Anvil did not dump block {block}")


def _verify(settings: Settings, record: DeploymentRecord | None = None) -> str | None:
    chain = connect(settings)
    return verify_chain(chain, record or deployment_store(settings, chain).load()).problem


def _genesis_blocks_in_state(state_file: Path) -> set[str]:
    blocks = json.loads(state_file.read_text())["blocks"]
    return {json.dumps(b["header"]) for b in blocks if int(b["header"]["number"], 16) == 0}


def test_verify_passes_after_ten_restarts_and_sigkills(
    settings: Settings, deployed: AnvilNode
) -> None:
    node = deployed
    chain = connect(settings)
    genesis = genesis_hash(chain.w3)
    assert deployment_store(settings, chain).load().genesis_hash == genesis
    by_number: set[str] = set()
    for restart in range(10):
        time.sleep(1.05)  # the next blocks carry a later time than genesis
        rpc(node.url, "anvil_mine", "0x2")
        if restart % 2 == 0:
            node.stop()  # SIGTERM: Anvil dumps its state
        else:
            if restart % 4 == 1:
                _wait_for_dump(node, int(rpc(node.url, "eth_blockNumber"), 16))
            node.kill()  # SIGKILL: back to the last interval dump
        node = AnvilNode(settings).start()
        assert _verify(settings) is None, f"after restart {restart + 1}: {_verify(settings)}"
        by_number.add(rpc(node.url, "eth_getBlockByNumber", "0x0", False)["hash"])
    node.stop()
    # The case the check must survive did happen: Anvil made a new genesis at each load.
    assert len(_genesis_blocks_in_state(settings.anvil_state_file)) > 1
    print(f"block 0 by number answered {len(by_number)} different hashes over 10 restarts")


def test_a_different_genesis_is_named(settings: Settings, deployed: AnvilNode) -> None:
    record = deployment_store(settings, connect(settings)).load()
    deployed.stop()
    settings.anvil_state_file.rename(settings.anvil_state_file.with_name("old-state.json"))
    node = AnvilNode(settings).start()  # a new chain under the same chain id
    try:
        rpc(node.url, "anvil_mine", "0x3")
        new_genesis = genesis_hash(connect(settings).w3)
        assert _verify(settings, record) == (
            f"the chain's genesis block is {new_genesis}, not {record.genesis_hash} as the "
            f"deployment record of chain {record.chain_id} says: this is a different chain "
            "under the same id"
        )
    finally:
        node.stop()


def test_an_edited_deployment_record_is_named(settings: Settings, deployed: AnvilNode) -> None:
    store = deployment_store(settings, connect(settings))
    assert store.path is not None
    data = json.loads(store.path.read_text())
    ledger = data["contracts"]["ConsentLedger"]
    real = ledger["address"]
    # Point the record at another contract that has code (the Consortium), as an edit would.
    ledger["address"] = data["contracts"]["Consortium"]["address"]
    store.path.write_text(json.dumps(data, indent=2))
    assert _verify(settings) == (
        f"ConsentLedger's deployment transaction {ledger['txHash']} created {real} in block "
        f"{ledger['blockNumber']}, not {ledger['address']} in block {ledger['blockNumber']} "
        "as recorded"
    )


def test_code_missing_at_a_recorded_address_is_named(
    settings: Settings, deployed: AnvilNode
) -> None:
    assert _verify(settings) is None
    record = deployment_store(settings, connect(settings)).load()
    address = record.contracts["LoyaltyPoints"].address
    rpc(deployed.url, "anvil_setCode", address, "0x")
    assert _verify(settings) == f"LoyaltyPoints has no code at its recorded address {address}"
