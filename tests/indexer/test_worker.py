"""The indexer inside the gateway: started by the lifespan, and how stale the read model is."""

from __future__ import annotations

import random
import statistics
import time

import pytest
from fastapi.testclient import TestClient

from crm_gateway.api.app import create_app
from crm_gateway.runtime import Runtime
from tests.indexer.conftest import writer_for

GRANTS = 10


def _wait(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


@pytest.fixture(params=["embedded", pytest.param("anvil", marks=pytest.mark.anvil)])
def any_runtime(request: pytest.FixtureRequest) -> Runtime:
    runtime: Runtime = request.getfixturevalue(
        "runtime" if request.param == "embedded" else "anvil_runtime"
    )
    return runtime


def test_a_role_grant_is_in_the_read_model_soon_after_its_block(
    any_runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = any_runtime
    writer = writer_for(runtime)
    read_model = runtime.read_model
    with TestClient(create_app(runtime=runtime)):
        assert runtime.index_worker.running
        head = runtime.chain.latest_block()
        _wait(lambda: (read_model.as_of_block() or -1) >= head)
        delays = []
        for _ in range(GRANTS):
            # Out of step with the worker's polls, as requests would be.
            time.sleep(random.uniform(0, runtime.settings.indexer_poll_seconds))
            account = writer.funded_account().address
            _tx, mined = writer.send_timed(writer.grant_call("AGENT", account))
            _wait(lambda account=account: read_model.has_role("AGENT", account))  # type: ignore[misc]
            delays.append(time.monotonic() - mined)
    delays.sort()
    with capsys.disabled():
        print(
            f"\nread-model staleness on {runtime.chain.kind.value} "
            f"(poll {runtime.settings.indexer_poll_seconds}s, {GRANTS} grants): "
            f"median {statistics.median(delays) * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms"
        )
    assert delays[-1] < 2.0


def test_the_gateway_can_run_without_its_indexer(runtime: Runtime) -> None:
    settings = runtime.settings.model_copy(update={"indexer_enabled": False})
    with TestClient(create_app(settings, runtime=runtime)):
        assert not runtime.index_worker.running
