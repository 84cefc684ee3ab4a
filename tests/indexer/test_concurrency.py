"""Two indexers on one database (the gateway's and `index run`), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from crm_gateway.indexer import ChainIndexer, StepResult
from crm_gateway.runtime import Runtime
from tests.indexer.conftest import (
    assert_matches_chain,
    chain_event_keys,
    snapshot,
    stored_event_keys,
    writer_for,
)


def test_two_indexers_never_apply_a_range_twice(db_runtime: Runtime) -> None:
    runtime = db_runtime
    writer = writer_for(runtime)
    indexers = [
        ChainIndexer(runtime.contracts, runtime.session_factory, max_block_range=2)
        for _ in range(2)
    ]
    done = threading.Event()
    results: list[list[StepResult]] = [[], []]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            while not done.is_set():
                results[index].append(indexers[index].step())
            results[index].append(indexers[index].run_to_head())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for step in range(6):
        writer.register()
        writer.grant("AGENT" if step % 2 else "AUDITOR")
    writer.register_batch(4)
    done.set()
    for thread in threads:
        thread.join(30)
    assert not errors
    scanned = [s for r in results for s in r if s.kind == "scanned"]
    ranges = [(s.from_block, s.to_block) for s in scanned]
    assert len(ranges) == len(set(ranges))  # each range applied by one indexer only
    keys = stored_event_keys(runtime)
    assert len(keys) == len(set(keys))
    assert set(keys) == chain_event_keys(runtime)
    assert_matches_chain(runtime)
    together = snapshot(runtime)
    indexers[0].drop()
    indexers[0].run_to_head()
    assert snapshot(runtime) == together
