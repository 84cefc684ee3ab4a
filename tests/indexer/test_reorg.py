"""Reorgs: the read model follows the chain the node now has (embedded chain and a real Anvil)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from crm_gateway.chain.contracts import Contracts
from crm_gateway.indexer import ChainIndexer, StepResult
from crm_gateway.runtime import Runtime
from tests.indexer.conftest import (
    ChainWriter,
    assert_matches_chain,
    chain_event_keys,
    cursor_of,
    snapshot,
    stored_event_keys,
    writer_for,
)


class Snapshots:
    """evm_snapshot / evm_revert on Anvil, take_snapshot / revert_to_snapshot on eth-tester."""

    def __init__(self, runtime: Runtime) -> None:
        self.w3 = runtime.chain.w3
        self.tester = getattr(self.w3.provider, "ethereum_tester", None)

    def take(self) -> Any:
        if self.tester is not None:
            return self.tester.take_snapshot()
        return self.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]

    def revert(self, snapshot_id: Any) -> None:
        if self.tester is not None:
            self.tester.revert_to_snapshot(snapshot_id)
            return
        reverted = self.w3.provider.make_request("evm_revert", [snapshot_id])  # type: ignore[arg-type]
        assert reverted["result"] is True


@pytest.fixture(params=["embedded", pytest.param("anvil", marks=pytest.mark.anvil)])
def chain_runtime(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    name = "runtime" if request.param == "embedded" else "anvil_runtime"
    runtime: Runtime = request.getfixturevalue(name)
    return runtime


@pytest.mark.parametrize("new_chain", ["longer", "shorter"])
def test_the_read_model_follows_the_new_chain_after_a_reorg(
    chain_runtime: Runtime, new_chain: str
) -> None:
    runtime = chain_runtime
    writer = writer_for(runtime)
    read_model = runtime.read_model
    indexer = ChainIndexer(runtime.contracts, runtime.session_factory)
    kept = writer.new_customer_id()
    writer.register(kept)
    indexer.run_to_head()
    fork_point = runtime.chain.latest_block()

    snapshots = Snapshots(runtime)
    snapshot_id = snapshots.take()
    old_agent = writer.funded_account().address
    writer.grant("AGENT", old_agent)
    old_customer = writer.new_customer_id()
    writer.register(old_customer)
    writer.update(kept, 1)
    writer.register_batch(3)
    indexer.run_to_head()
    assert read_model.has_role("AGENT", old_agent)
    assert read_model.customer("0x" + old_customer.hex()) is not None
    old_keys = set(stored_event_keys(runtime))
    old_head = runtime.chain.latest_block()

    snapshots.revert(snapshot_id)
    assert runtime.chain.latest_block() == fork_point
    new_auditor = writer.funded_account().address
    writer.grant("AUDITOR", new_auditor)
    new_customer = writer.new_customer_id()
    writer.register(new_customer)
    if new_chain == "longer":
        for _ in range(5):
            writer.register()
        assert runtime.chain.latest_block() > old_head
    else:
        assert runtime.chain.latest_block() < old_head

    steps: list[StepResult] = []
    indexer.run_to_head(steps.append)
    [rewind] = [s for s in steps if s.kind == "rewound"]
    assert rewind.to_block is not None
    assert rewind.to_block <= fork_point
    assert rewind.removed > 0

    assert not read_model.has_role("AGENT", old_agent)
    assert read_model.customer("0x" + old_customer.hex()) is None
    assert read_model.has_role("AUDITOR", new_auditor)
    assert read_model.customer("0x" + new_customer.hex()) is not None
    kept_view = read_model.customer("0x" + kept.hex())
    assert kept_view is not None
    assert kept_view.holders[1].version == 1
    keys = stored_event_keys(runtime)
    assert len(keys) == len(set(keys))
    assert set(keys) == chain_event_keys(runtime)
    assert not (old_keys - set(keys)) & chain_event_keys(runtime)
    cursor = cursor_of(runtime)
    assert cursor is not None
    head = runtime.chain.w3.eth.get_block("latest")
    assert cursor == (head["number"], head["hash"].to_0x_hex())
    assert read_model.as_of_block() == head["number"]
    assert_matches_chain(runtime)

    followed = snapshot(runtime)
    indexer.drop()
    indexer.run_to_head()
    assert snapshot(runtime) == followed  # the same as indexing the new chain from scratch


def test_a_reorg_deeper_than_the_recorded_blocks_rebuilds_from_scratch(runtime: Runtime) -> None:
    writer = writer_for(runtime)
    indexer = ChainIndexer(runtime.contracts, runtime.session_factory, reorg_depth=1)
    snapshots = Snapshots(runtime)
    snapshot_id = snapshots.take()
    for _ in range(4):
        writer.register()
    indexer.run_to_head()
    snapshots.revert(snapshot_id)
    for _ in range(5):
        writer.grant("AGENT")
    steps: list[StepResult] = []
    indexer.run_to_head(steps.append)
    assert "reset" in [s.kind for s in steps]
    assert set(stored_event_keys(runtime)) == chain_event_keys(runtime)
    assert_matches_chain(runtime)


def test_a_contract_added_to_the_record_below_the_cursor_is_read_from_its_deployment(
    runtime: Runtime, writer: ChainWriter
) -> None:
    customer_id = writer.new_customer_id()
    writer.register(customer_id)
    record = copy.deepcopy(runtime.contracts.record)
    del record.contracts["CustomerRegistry"]
    partial = Contracts(runtime.chain, runtime.contracts.artifacts, record)
    ChainIndexer(partial, runtime.session_factory).run_to_head()
    assert runtime.read_model.customer("0x" + customer_id.hex()) is None
    assert runtime.read_model.has_role("DATA_STEWARD", writer.deployer.address)

    full = ChainIndexer(runtime.contracts, runtime.session_factory)
    steps: list[StepResult] = []
    full.run_to_head(steps.append)
    assert [s.reason for s in steps if s.kind == "rewound"] == ["new contract"]
    assert runtime.read_model.customer("0x" + customer_id.hex()) is not None
    assert set(stored_event_keys(runtime)) == chain_event_keys(runtime)
    assert_matches_chain(runtime)
    assert all(c.covered for c in full.status().contracts)
