"""Kill the indexer in the middle of a range, start a fresh one: nothing lost, nothing twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from crm_gateway.indexer import ChainIndexer, IndexedEvent, ProjectionRegistry
from crm_gateway.indexer import scanner as scanner_module
from crm_gateway.runtime import Runtime
from tests.indexer.conftest import (
    ChainWriter,
    assert_matches_chain,
    chain_event_keys,
    cursor_of,
    snapshot,
    stored_event_keys,
)


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing on the way may swallow it."""


def _populate(writer: ChainWriter) -> None:
    ids = [writer.new_customer_id() for _ in range(4)]
    for customer_id in ids:
        writer.register(customer_id)
    writer.grant("AGENT")
    writer.register_batch(5)
    writer.update(ids[0], 1)
    writer.grant("AUDITOR")
    writer.erase(ids[1])


@pytest.mark.parametrize(("where", "max_block_range"), [("projection", 500), ("between_writes", 3)])
def test_a_crash_mid_range_loses_nothing_and_counts_nothing_twice(
    runtime: Runtime,
    writer: ChainWriter,
    new_indexer: Callable[..., ChainIndexer],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    max_block_range: int,
) -> None:
    _populate(writer)
    applied = 0
    crash_at = 12  # the 12th event applied: inside the only range, or inside a later one

    def crashing_apply(registry: ProjectionRegistry, session: Any, event: IndexedEvent) -> None:
        nonlocal applied
        applied += 1
        if where == "projection" and applied == crash_at:
            raise Killed
        registry.apply(session, event)

    real_record = ChainIndexer._record_blocks

    def crashing_record(session: Any, blocks: dict[int, str]) -> None:
        if applied >= crash_at:
            raise Killed  # events written and applied, block hashes and cursor not yet final
        real_record(session, blocks)

    monkeypatch.setattr(scanner_module, "apply_event", crashing_apply)
    monkeypatch.setattr(ChainIndexer, "_record_blocks", staticmethod(crashing_record))
    first = new_indexer(max_block_range=max_block_range)
    with pytest.raises(Killed):
        first.run_to_head()
    committed = cursor_of(runtime)
    partial = stored_event_keys(runtime)
    assert len(partial) < len(chain_event_keys(runtime))
    if max_block_range == 500:
        assert committed is None
        assert partial == []
    else:
        assert committed is not None
        assert partial

    monkeypatch.undo()
    restarted = new_indexer(max_block_range=max_block_range)
    restarted.run_to_head()
    keys = stored_event_keys(runtime)
    assert len(keys) == len(set(keys))
    assert set(keys) == chain_event_keys(runtime)
    assert_matches_chain(runtime)
    recovered = snapshot(runtime)

    restarted.drop()
    new_indexer().run_to_head()
    assert snapshot(runtime) == recovered  # the same as an indexer that never crashed
