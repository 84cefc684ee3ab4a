"""AnvilNode against the real Anvil binary from node_modules, on a free port and a tmp state."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_gateway.chain.anvil import AnvilError, AnvilNode, fund_dev_account
from crm_gateway.config import Settings
from tests.conftest import make_settings

pytestmark = pytest.mark.anvil

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]
BINARY = SETTINGS.path(SETTINGS.anvil_binary)
needs_binary = pytest.mark.skipif(
    not BINARY.is_file(), reason=f"Anvil binary missing at {BINARY}; run `npm ci`"
)
RECIPIENT = "0x00000000000000000000000000000000c0ffee01"


def rpc(url: str, method: str, *params: Any) -> Any:
    body = httpx.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=5
    ).json()
    assert "error" not in body, body
    return body["result"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def anvil_processes_for(state_file: Path) -> list[int]:
    """Pids of live processes whose command line names this state file."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if str(state_file).encode() in cmdline and stat.rpartition(")")[2].split()[0] != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Any]:
    nodes: list[AnvilNode] = []
    port = free_port()

    def factory(**overrides: Any) -> AnvilNode:
        kwargs: dict[str, Any] = {
            "port": port,
            "state_file": tmp_path / "anvil" / "state.json",
            "chain_id": 31337,
            "state_interval": 3600,
            "start_timeout": 15.0,
        }
        kwargs.update(overrides)
        node = AnvilNode(SETTINGS, **kwargs)
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        if node.is_running:
            node.kill()


@needs_binary
def test_start_health_stop(make_node: Any) -> None:
    node = make_node()
    node.start()
    assert node.is_running
    assert not node.adopted
    assert int(rpc(node.url, "eth_chainId"), 16) == 31337
    node.wait_until_healthy(1.0)
    record = json.loads(node.pid_file.read_text())
    assert record["pid"] == node.pid
    assert record["port"] == node.port
    pid = node.pid

    node.stop()

    assert not node.is_running
    assert not node.pid_file.exists()
    assert anvil_processes_for(node.state_file) == [], f"orphan anvil after stop (pid {pid})"
    assert node.state_file.exists(), "Anvil writes its state on SIGTERM"
    with pytest.raises(httpx.ConnectError):
        httpx.post(node.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})


@needs_binary
def test_state_survives_sigterm_restart(make_node: Any) -> None:
    with make_node() as node:
        sender = rpc(node.url, "eth_accounts")[0]
        transfer = {"from": sender, "to": RECIPIENT, "value": "0x2a"}
        tx = rpc(node.url, "eth_sendTransaction", transfer)
        receipt = rpc(node.url, "eth_getTransactionReceipt", tx)
        head = rpc(node.url, "eth_getBlockByNumber", "latest", False)
        nonce = rpc(node.url, "eth_getTransactionCount", sender, "latest")

    with make_node() as again:
        assert rpc(again.url, "eth_getBalance", RECIPIENT, "latest") == "0x2a"
        assert rpc(again.url, "eth_getTransactionCount", sender, "latest") == nonce == "0x1"
        assert rpc(again.url, "eth_getBlockByNumber", "latest", False)["hash"] == head["hash"]
        assert rpc(again.url, "eth_getTransactionReceipt", tx) == receipt
        # The next block extends the restored head.
        rpc(again.url, "anvil_mine", "0x1")
        assert rpc(again.url, "eth_getBlockByNumber", "latest", False)["parentHash"] == head["hash"]


@needs_binary
def test_wait_returns_when_the_node_exits(make_node: Any) -> None:
    node = make_node().start()
    assert node.wait(0.2) is None
    os.kill(node.pid, signal.SIGTERM)
    assert node.wait(10) == 0
    assert not node.is_running
    node.stop()


@needs_binary
def test_second_start_adopts_the_running_node(make_node: Any) -> None:
    first = make_node().start()
    second = make_node().start()
    assert second.adopted
    assert second.pid == first.pid
    second.stop()
    assert not first.is_running
    assert anvil_processes_for(first.state_file) == []


@needs_binary
def test_killed_node_restarts_from_last_dump(make_node: Any) -> None:
    node = make_node(state_interval=1).start()
    rpc(node.url, "anvil_mine", "0x3")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if node.state_file.exists() and json.loads(node.state_file.read_text()).get(
            "best_block_number"
        ) in ("0x3", 3):
            break
        time.sleep(0.1)
    node.kill()
    assert node.pid_file.exists(), "a crash leaves a stale pid file"

    again = make_node(state_interval=1).start()
    assert not again.adopted
    assert int(rpc(again.url, "eth_blockNumber"), 16) == 3
    again.stop()


@needs_binary
def test_port_taken_by_another_process(make_node: Any) -> None:
    node = make_node()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", node.port))
        squatter.listen()
        with pytest.raises(AnvilError) as raised:
            node.start()
    assert str(raised.value) == (
        f"port {node.port} on 127.0.0.1 is already in use by another process; "
        "set ANVIL_PORT to a free port"
    )
    assert not node.is_running


def test_missing_binary(make_node: Any, tmp_path: Path) -> None:
    node = make_node(binary=tmp_path / "no-such-anvil")
    with pytest.raises(AnvilError, match="missing; run `npm ci`"):
        node.start()


@needs_binary
def test_damaged_state_file_is_refused(make_node: Any) -> None:
    node = make_node()
    node.state_file.parent.mkdir(parents=True)
    node.state_file.write_text('{"block": {"number": "0x')
    with pytest.raises(AnvilError, match="is damaged"):
        node.start()
    assert not node.is_running


@needs_binary
def test_exit_during_start_reports_the_log(make_node: Any) -> None:
    node = make_node()
    node.state_file.parent.mkdir(parents=True)
    node.state_file.write_text("[]")  # valid JSON, but not an Anvil state: Anvil exits
    with pytest.raises(AnvilError, match="exited with code 2 while starting") as raised:
        node.start()
    first_line = str(raised.value).splitlines()[0]
    assert "failed to parse json file" in first_line, first_line
    assert str(node.log_file) in first_line
    assert not node.is_running
    assert not node.pid_file.exists()


@needs_binary
def test_fund_dev_account(make_node: Any) -> None:
    with make_node() as node:
        fund_dev_account(node.url, RECIPIENT, 10**21)
        assert int(rpc(node.url, "eth_getBalance", RECIPIENT, "latest"), 16) == 10**21
    assert os.path.exists(node.log_file)


@needs_binary
def test_interval_mining_puts_many_transactions_in_one_block(tmp_path: Path) -> None:
    """With a block time and a block gas limit, transactions share blocks (as on a consortium
    network) instead of one block each."""
    settings = make_settings(
        tmp_path, anvil_block_time_seconds=1.0, anvil_block_gas_limit=300_000_000
    )
    node = AnvilNode(settings, port=free_port(), state_interval=3600, start_timeout=15.0)
    try:
        node.start()
        assert "--gas-limit" in node.command()
        assert int(rpc(node.url, "eth_getBlockByNumber", "latest", False)["gasLimit"], 16) == (
            300_000_000
        )
        sender, receiver = rpc(node.url, "eth_accounts")[:2]
        hashes = [
            rpc(node.url, "eth_sendTransaction", {"from": sender, "to": receiver, "value": "0x1"})
            for _ in range(3)
        ]
        deadline = time.monotonic() + 10
        receipts: list[Any] = []
        while time.monotonic() < deadline:
            receipts = [rpc(node.url, "eth_getTransactionReceipt", h) for h in hashes]
            if all(receipts):
                break
            time.sleep(0.1)
        assert all(receipts), "interval mining never mined the transactions"
        assert len({receipt["blockNumber"] for receipt in receipts}) == 1
    finally:
        node.stop()
