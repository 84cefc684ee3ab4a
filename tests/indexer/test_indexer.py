"""The indexer on the embedded chain: events into the read model, once each, in bounded ranges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select, update
from web3.logs import DISCARD

from crm_gateway.indexer import ChainIndexer, StepResult, role_id
from crm_gateway.runtime import Runtime
from crm_gateway.store.models import ChainEvent, CustomerStatus, IndexerCursor
from tests.indexer.conftest import (
    ChainWriter,
    assert_matches_chain,
    chain_event_keys,
    cursor_of,
    snapshot,
    stored_event_keys,
    writer_for,
)


def test_role_grants_and_customers_appear_in_the_read_model(db_runtime: Runtime) -> None:
    runtime = db_runtime
    writer = writer_for(runtime)
    read_model = runtime.read_model
    indexer = ChainIndexer(runtime.contracts, runtime.session_factory)
    assert read_model.as_of_block() is None
    agent = writer.grant("AGENT")
    agent_account = (
        runtime.contracts["Consortium"]
        .events.RoleGranted()
        .process_receipt(agent, errors=DISCARD)[0]
    )
    account = agent_account["args"]["account"]
    customer_id = writer.new_customer_id()
    registered = writer.register(customer_id)
    writer.update(customer_id, 1)

    last = indexer.run_to_head()
    assert last.kind == "idle"
    as_of = read_model.as_of_block()
    assert as_of is not None
    assert as_of >= registered["blockNumber"] > agent["blockNumber"]
    assert indexer.as_of == as_of == runtime.chain.latest_block()

    assert read_model.has_role("AGENT", account)
    assert read_model.has_role("agent", account.lower())
    assert not read_model.has_role("DATA_STEWARD", account)
    [view] = read_model.roles_of(account)
    assert (view.role, view.role_id, view.org_id, view.active) == (
        "AGENT",
        role_id("AGENT"),
        1,
        True,
    )
    assert read_model.organization_of(account) == 1
    deployer = writer.deployer.address
    assert {v.role for v in read_model.roles_of(deployer)} == {
        "CONSORTIUM_ADMIN",
        "ORG_ADMIN",
        "DATA_STEWARD",
    }
    assert [o.org_id for o in read_model.organizations()] == [1]

    customer = read_model.customer("0x" + customer_id.hex())
    assert customer is not None
    assert customer.status is CustomerStatus.ACTIVE
    assert customer.registered_block == registered["blockNumber"]
    assert customer.holders[1].version == 2
    assert customer.as_of_block == as_of
    assert read_model.holding("0x" + customer_id.hex(), 1) == customer.holders[1]
    assert read_model.customer("0x" + "ab" * 32) is None

    writer.revoke("AGENT", account)
    writer.erase(customer_id)
    indexer.run_to_head()
    assert not read_model.has_role("AGENT", account)
    assert read_model.organization_of(account) is None  # the last role went: no longer a member
    erased = read_model.customer("0x" + customer_id.hex())
    assert erased is not None
    assert erased.status is CustomerStatus.ERASED
    assert erased.holders == {}
    assert_matches_chain(runtime)
    keys = stored_event_keys(runtime)
    assert len(keys) == len(set(keys))
    assert set(keys) == chain_event_keys(runtime)


def test_each_event_is_stored_and_applied_once_when_a_range_is_scanned_again(
    runtime: Runtime, writer: ChainWriter, new_indexer: Callable[..., ChainIndexer]
) -> None:
    indexer = new_indexer()
    ids = [writer.new_customer_id() for _ in range(3)]
    for customer_id in ids:
        writer.register(customer_id)
    indexer.run_to_head()
    before = snapshot(runtime)
    start = indexer.start_block()
    assert start is not None

    # Put the cursor back to the deployment block, as if the later ranges had never committed.
    chain_hash = runtime.chain.w3.eth.get_block(start)["hash"].to_0x_hex()
    with runtime.session_factory() as session:
        session.execute(update(IndexerCursor).values(block_number=start, block_hash=chain_hash))
        session.commit()
    steps: list[StepResult] = []
    indexer.run_to_head(steps.append)
    assert [s.events for s in steps if s.kind == "scanned"] == [0]  # the range again, nothing new
    assert snapshot(runtime) == before
    with runtime.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ChainEvent)) == len(
            chain_event_keys(runtime)
        )


def test_ranges_are_bounded_and_the_result_does_not_depend_on_them(
    runtime: Runtime,
    writer: ChainWriter,
    new_indexer: Callable[..., ChainIndexer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for _ in range(4):
        writer.grant("AUDITOR")
    writer.register_batch(5)
    spans: list[int] = []
    w3 = runtime.chain.w3
    real_get_logs = w3.eth.get_logs

    def spying_get_logs(params: Any) -> Any:
        spans.append(int(params["toBlock"]) - int(params["fromBlock"]) + 1)
        return real_get_logs(params)

    monkeypatch.setattr(w3.eth, "get_logs", spying_get_logs)
    small = new_indexer(max_block_range=2)
    small.run_to_head()
    assert spans
    assert max(spans) <= 2
    head = runtime.chain.latest_block()
    start = small.start_block()
    assert start is not None
    assert len(spans) == -(-(head - start + 1) // 2)
    assert_matches_chain(runtime)
    by_small = snapshot(runtime)

    small.drop()
    assert cursor_of(runtime) is None
    new_indexer(max_block_range=500).run_to_head()
    assert snapshot(runtime) == by_small


def test_a_range_with_too_many_events_is_cut_at_a_block_boundary(
    runtime: Runtime, writer: ChainWriter, new_indexer: Callable[..., ChainIndexer]
) -> None:
    batches = [writer.register_batch(6) for _ in range(3)]  # 6 events per block: 2 blocks > 10
    big = writer.register_batch(12)  # more than a range may hold, but one block
    indexer = new_indexer(max_events_per_range=10)
    steps: list[StepResult] = []
    indexer.run_to_head(steps.append)
    scanned = [s for s in steps if s.kind == "scanned"]
    assert {b["blockNumber"] for b in [*batches, big]} <= {s.to_block for s in scanned}
    assert all(s.events <= 10 or s.events == 12 for s in scanned)
    assert_matches_chain(runtime)
    assert set(stored_event_keys(runtime)) == chain_event_keys(runtime)


def test_suspension_makes_roles_inactive_and_reactivation_restores_them(
    runtime: Runtime, writer: ChainWriter, new_indexer: Callable[..., ChainIndexer]
) -> None:
    consortium = writer.consortium().functions
    second = writer.funded_account()
    added = writer.send(consortium.proposeAddOrganization("second", second.address))
    proposal = (
        writer.consortium()
        .events.ProposalCreated()
        .process_receipt(added, errors=DISCARD)[0]["args"]
    )
    writer.send(consortium.execute(proposal["proposalId"]))
    agent = writer.funded_account()
    writer.grant("AGENT", agent.address, signer=second)

    indexer = new_indexer()
    read_model = runtime.read_model
    indexer.run_to_head()
    assert read_model.has_role("AGENT", agent.address)
    assert read_model.organization_of(agent.address) == 2

    suspend = writer.send(consortium.proposeSuspendOrganization(2))
    pid = (
        writer.consortium()
        .events.ProposalCreated()
        .process_receipt(suspend, errors=DISCARD)[0]["args"]
    )
    writer.send(consortium.approve(pid["proposalId"]), signer=second)
    writer.send(consortium.execute(pid["proposalId"]))
    indexer.run_to_head()
    assert not read_model.has_role("AGENT", agent.address)
    assert not read_model.has_role("ORG_ADMIN", second.address)
    assert read_model.has_role("ORG_ADMIN", writer.deployer.address)
    assert [o.active for o in read_model.organizations()] == [True, False]
    assert_matches_chain(runtime)

    reactivate = writer.send(consortium.proposeReactivateOrganization(2))
    pid = (
        writer.consortium()
        .events.ProposalCreated()
        .process_receipt(reactivate, errors=DISCARD)[0]["args"]
    )
    writer.send(consortium.execute(pid["proposalId"]))
    indexer.run_to_head()
    assert read_model.has_role("AGENT", agent.address)
    assert_matches_chain(runtime)
