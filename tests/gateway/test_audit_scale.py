"""Anchoring 100,000 access-log entries: one transaction per batch, whatever the batch holds.

The entries go in through the store layer in one executemany INSERT, hash-chained as any other;
the gateway's anchorer cuts them into batches of AUDIT_ANCHOR_BATCH_SIZE (10,000) and queues one
outbox write per batch. The gas of each batch's transaction is printed (run with `-s`), and the
whole log is verified against the anchors afterwards.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from crm_gateway.audit import LogVerifier
from crm_gateway.runtime import Runtime
from crm_gateway.store import audit as log_store
from crm_gateway.store.models import ChainTransaction, Operation
from tests.gateway.conftest import log_many, wait_until

ENTRIES = 100_000


def test_anchoring_100000_entries_costs_one_transaction_per_batch(
    client: TestClient, role_key: Callable[[str], dict[str, str]], runtime: Runtime
) -> None:
    role_key("AUDITOR")
    signer = runtime.anchor_signer()
    assert signer is not None

    def settled() -> bool:
        runtime.anchorer.refresh()
        return all(b.status == "anchored" for b in runtime.anchorer.batches())

    # The fixtures' few entries first: the organisation's first batch also creates its counters.
    (queued_first,) = runtime.anchorer.anchor(signer)
    wait_until(settled)
    (first,) = [b for b in runtime.anchorer.batches() if b.id == queued_first.id]

    started = time.monotonic()
    log_many(runtime, ENTRIES)
    with runtime.session_factory() as session:
        total = log_store.read_head(session).last_seq
    inserted = time.monotonic() - started
    assert total == first.last_seq + ENTRIES

    started = time.monotonic()
    queued = runtime.anchorer.anchor(signer)
    size = runtime.settings.audit_anchor_batch_size
    assert len(queued) == math.ceil(ENTRIES / size) == 10
    wait_until(settled, timeout=60)
    anchored = time.monotonic() - started
    batches = sorted(
        (b for b in runtime.anchorer.batches() if b.id != first.id), key=lambda b: b.first_seq
    )
    assert [b.count for b in batches] == [size] * 10
    assert (batches[0].first_seq, batches[-1].last_seq) == (first.last_seq + 1, total)

    # One transaction per batch, carrying that batch's write alone.
    with runtime.session_factory() as session:
        per_tx = dict(
            session.execute(
                select(Operation.chain_tx_id, func.count())
                .where(Operation.id.in_([b.operation_id for b in batches]))
                .group_by(Operation.chain_tx_id)
            ).all()
        )
        gas = {
            tx.tx_hash: tx.gas_used
            for tx in session.scalars(
                select(ChainTransaction).where(ChainTransaction.id.in_(list(per_tx)))
            )
        }
    assert len(per_tx) == len(batches)
    assert set(per_tx.values()) == {1}
    assert {b.tx_hash for b in batches} == set(gas)
    used = [int(b.gas_used or 0) for b in batches]
    assert used == [gas[b.tx_hash] for b in batches]
    # The same cost per batch (only the calldata's non-zero bytes vary with the numbers).
    assert max(used) - min(used) < 200
    # About 98k, plus ~22k since a batch records its organisation's previous batch, so that an
    # ORG_ADMIN can supersede a bogus batch and anchoring resumes after the one before it.
    assert max(used) < 125_000

    started = time.monotonic()
    anchor = runtime.contracts["AuditAnchor"]
    report = LogVerifier(runtime.session_factory, anchor=anchor, org_id=1).verify()
    verified = time.monotonic() - started
    assert report.summary == f"intact: {total} entries, {len(batches) + 1} batches anchored"

    print(
        f"\n{ENTRIES} entries: inserted in {inserted:.1f} s, anchored in {anchored:.1f} s "
        f"({len(batches)} transactions); {total} verified in {verified:.1f} s"
    )
    print(f"the organisation's first batch ({first.count} entries): {first.gas_used} gas")
    print("batch  entries           gas")
    for b in batches:
        print(f"{b.chain_batch_id:>5}  {b.first_seq:>6}..{b.last_seq:<7} {b.gas_used}")
