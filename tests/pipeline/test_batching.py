"""Batching: consecutive rows of a batchable kind share a transaction and keep their own status."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from crm_gateway.config import Settings
from crm_gateway.pipeline.outbox import ChainWrite
from crm_gateway.runtime import Runtime, build_runtime
from crm_gateway.services.access import AccessService, Role
from crm_gateway.services.operations import OperationService, OperationView
from crm_gateway.store.models import Operation
from tests.conftest import deploy_unless_embedded


def _id() -> str:
    return "0x" + os.urandom(32).hex()


@pytest.fixture
def steward_runtime(chain_settings: Settings) -> Iterator[Runtime]:
    deploy_unless_embedded(chain_settings)
    runtime = build_runtime(chain_settings)
    admin = str(runtime.contracts.record.deployer)
    _run(runtime, [AccessService(runtime.contracts).grant(admin, Role.DATA_STEWARD, admin)])
    yield runtime
    runtime.close()


def _registration(runtime: Runtime, customer_id: str, commitment: str | None = None) -> ChainWrite:
    admin = str(runtime.contracts.record.deployer)
    return ChainWrite(
        "customers.register",
        "CustomerRegistry",
        "register",
        [customer_id, commitment or _id()],
        admin,
    )


def _run(runtime: Runtime, writes: list[ChainWrite]) -> list[OperationView]:
    service = OperationService(runtime.session_factory, runtime.pipeline)
    ids = [
        service.submit(write, api_key_id=None, idempotency_key=None, payload=[i, write.args])[0].id
        for i, write in enumerate(writes)
    ]
    assert runtime.pipeline.drain(
        until=lambda: all(service.get_internal(i).settled for i in ids), timeout=60
    )
    return [service.get_internal(i) for i in ids]


def _transactions(runtime: Runtime, views: list[OperationView]) -> set[int]:
    ids = [v.id for v in views]
    with runtime.session_factory() as session:
        return set(session.scalars(select(Operation.chain_tx_id).where(Operation.id.in_(ids))))


def test_registrations_share_one_transaction_and_keep_their_own_status(
    steward_runtime: Runtime,
) -> None:
    runtime = steward_runtime
    existing = _id()
    [first] = _run(runtime, [_registration(runtime, existing)])
    assert first.status == "confirmed"

    fresh = [_id() for _ in range(20)]
    writes = [_registration(runtime, cid) for cid in fresh[:10]]
    writes.append(_registration(runtime, existing))  # already held by this organisation
    writes += [_registration(runtime, cid) for cid in fresh[10:]]
    views = _run(runtime, writes)

    assert len(_transactions(runtime, views)) == 1
    statuses = [v.status for v in views]
    assert statuses == ["confirmed"] * 10 + ["failed"] + ["confirmed"] * 10
    assert views[10].error == {
        "name": "CustomerAlreadyRegistered",
        "args": {"customerId": existing},
    }
    for view, customer_id in zip(views[:10] + views[11:], fresh, strict=True):
        [event] = view.result["events"]
        assert event["event"] == "CustomerRegistered"
        assert event["args"]["customerId"] == customer_id
    registry = runtime.contracts["CustomerRegistry"]
    assert all(registry.functions.customer(cid).call()[0] == 1 for cid in fresh)


def test_a_batch_over_the_gas_cap_is_split(chain_settings: Settings) -> None:
    settings = chain_settings.model_copy(update={"pipeline_max_batch_gas": 600_000})
    deploy_unless_embedded(settings)
    runtime = build_runtime(settings)
    try:
        admin = str(runtime.contracts.record.deployer)
        _run(runtime, [AccessService(runtime.contracts).grant(admin, Role.DATA_STEWARD, admin)])
        views = _run(runtime, [_registration(runtime, _id()) for _ in range(12)])
        assert {v.status for v in views} == {"confirmed"}
        transactions = _transactions(runtime, views)
        assert 1 < len(transactions) < 12
    finally:
        runtime.close()


def test_a_lone_row_uses_the_single_call_and_its_revert_is_decoded(
    steward_runtime: Runtime,
) -> None:
    [view] = _run(
        steward_runtime, [_registration(steward_runtime, _id(), commitment="0x" + "00" * 32)]
    )
    assert view.status == "failed"
    assert view.error == {"name": "InvalidCommitment", "args": {}}
