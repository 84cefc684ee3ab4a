"""`crm-chaincode audit verify`, `customers verify --all` and `chain verify` on the embedded chain.

The log: the fixtures' entries plus 30 more, anchored in batches of 10 entries by an AUDITOR, then
5 entries that are not anchored yet. Each tampering is done to the database directly, checked,
and undone: the verifier must name exactly the first thing that was altered, removed or reordered,
or the anchored root that was edited, and the command must exit 1; the untouched log is intact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, Table, delete, insert, select, update
from typer.testing import CliRunner

from crm_gateway.audit import Anchorer, LogVerifier
from crm_gateway.cli import app
from crm_gateway.cli import audit as audit_cli
from crm_gateway.runtime import Runtime
from crm_gateway.store import audit as log_store
from crm_gateway.store.models import (
    AccessLogEntry,
    AuditBatch,
    AuditChainHead,
    CustomerRecord,
)
from tests.gateway.conftest import DATABASES, log_many, wait_until

LOG = cast(Table, AccessLogEntry.__table__)
BATCHES = cast(Table, AuditBatch.__table__)
HEAD = cast(Table, AuditChainHead.__table__)


@pytest.fixture(params=DATABASES)
def gateway_database(request: pytest.FixtureRequest) -> str:
    """Every test here runs on SQLite and on the machine's PostgreSQL."""
    return str(request.param)


@dataclasses.dataclass
class World:
    runtime: Runtime
    batches: list[Any]  # anchored BatchViews, by first entry
    last: int  # the last entry

    def verify(self) -> str:
        anchor = self.runtime.contracts["AuditAnchor"]
        verifier = LogVerifier(self.runtime.session_factory, anchor=anchor, org_id=1)
        return verifier.verify().summary

    def batch_of(self, seq: int) -> Any:
        return next(b for b in self.batches if b.first_seq <= seq <= b.last_seq)

    @contextmanager
    def tampered(self) -> Iterator[Tamper]:
        """Something to tamper with the log through; everything is restored afterwards."""
        engine = self.runtime.session_factory.kw["bind"]
        with engine.connect() as connection:
            saved = {
                t: connection.execute(select(t)).mappings().all() for t in (LOG, BATCHES, HEAD)
            }
        try:
            yield Tamper(engine)
        finally:
            with engine.begin() as connection:
                for table in (BATCHES, LOG, HEAD):
                    connection.execute(delete(table))
                for table in (HEAD, LOG, BATCHES):
                    if saved[table]:
                        connection.execute(insert(table), [dict(row) for row in saved[table]])
            assert self.verify().startswith("intact"), "the restore left the log broken"


class Tamper:
    """Runs each statement in a transaction of its own, committed at once (as an intruder with
    database access would), so the verifier sees it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def execute(self, statement: Any) -> Any:
        with self.engine.begin() as connection:
            result = connection.execute(statement)
            return result.all() if result.returns_rows else None


@pytest.fixture
def world(client: TestClient, role_key: Callable[[str], dict[str, str]], runtime: Runtime) -> World:
    role_key("AUDITOR")  # a key the gateway holds, granted AUDITOR: the anchor signer
    signer = runtime.anchor_signer()
    assert signer is not None
    log_many(runtime, 30)
    anchorer = Anchorer(
        sessions=runtime.session_factory,
        contracts=runtime.contracts,
        pipeline=runtime.pipeline,
        org_id=1,
        batch_size=10,
    )
    queued = anchorer.anchor(signer)
    assert len(queued) >= 3

    def settled() -> bool:
        anchorer.refresh()
        return all(b.status == "anchored" for b in anchorer.batches())

    wait_until(settled)
    log_many(runtime, 5)
    with runtime.session_factory() as session:
        last = log_store.read_head(session).last_seq
    return World(runtime, sorted(anchorer.batches(), key=lambda b: b.first_seq), last)


def test_an_untouched_log_is_intact(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert world.verify() == f"intact: {world.last} entries, {len(world.batches)} batches anchored"
    assert audit_cli.verify_log(world.runtime) == 0
    assert "intact:" in capsys.readouterr().out


def _expect(world: World, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert world.verify() == message
    assert audit_cli.verify_log(world.runtime) == 1
    printed = " ".join(capsys.readouterr().out.split())
    assert message in printed


def test_an_altered_entry_is_named(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    for seq in (17, world.last):  # anchored, and not yet anchored
        with world.tampered() as db:
            db.execute(update(LOG).where(LOG.c.seq == seq).values(purpose="curiosity"))
            _expect(
                world, f"entry {seq} was altered: its contents no longer match its hash", capsys
            )
    with world.tampered() as db:
        db.execute(update(LOG).where(LOG.c.seq == 3).values(decision="refused"))
        db.execute(update(LOG).where(LOG.c.seq == 9).values(decision="refused"))
        _expect(world, "entry 3 was altered: its contents no longer match its hash", capsys)


def test_a_removed_entry_is_named(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    with world.tampered() as db:
        db.execute(delete(LOG).where(LOG.c.seq == 12))
        _expect(world, "entry 12 was removed: entry 13 does not link to entry 11", capsys)
    with world.tampered() as db:
        db.execute(delete(LOG).where(LOG.c.seq.in_([1, 2])))
        _expect(
            world,
            "entries 1 to 2 were removed: entry 3 does not link to the start of the log",
            capsys,
        )
    last = world.last
    with world.tampered() as db:
        db.execute(delete(LOG).where(LOG.c.seq == last))
        _expect(
            world,
            f"entry {last} was removed: the log ends at entry {last - 1}, its chain head at "
            f"entry {last}",
            capsys,
        )
    # The tail of the anchored part, with the unanchored entries and the head rolled back too.
    end = world.batches[-1].last_seq
    with world.tampered() as db:
        ((previous,),) = db.execute(select(LOG.c.entry_hash).where(LOG.c.seq == end - 1))
        db.execute(delete(LOG).where(LOG.c.seq >= end))
        db.execute(update(HEAD).values(last_seq=end - 1, last_hash=previous))
        _expect(
            world,
            f"entry {end} was removed: the log ends at entry {end - 1}, but batch "
            f"{world.batches[-1].chain_batch_id} anchored entries up to {end}",
            capsys,
        )


def _swap(db: Any, a: int, b: int) -> None:
    db.execute(update(LOG).where(LOG.c.seq == a).values(seq=-1))
    db.execute(update(LOG).where(LOG.c.seq == b).values(seq=a))
    db.execute(update(LOG).where(LOG.c.seq == -1).values(seq=b))


@pytest.mark.parametrize(("a", "b"), [(21, 24), (5, 6), (8, 33)])
def test_swapped_entries_are_named(
    world: World, capsys: pytest.CaptureFixture[str], a: int, b: int
) -> None:
    with world.tampered() as db:
        _swap(db, a, b)
        _expect(world, f"entries {a} and {b} were swapped: each holds the other's contents", capsys)


def test_an_edited_anchored_root_is_named(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    batch = world.batches[1]
    forged = "0x" + "ab" * 32
    with world.tampered() as db:
        db.execute(update(BATCHES).where(BATCHES.c.id == batch.id).values(root=forged))
        _expect(
            world,
            f"the root of batch {batch.chain_batch_id} (entries {batch.first_seq} to "
            f"{batch.last_seq}) was edited in the database: it reads {forged}, but the chain "
            f"anchored {batch.root} in transaction {batch.tx_hash}",
            capsys,
        )
    # An entry altered before it comes first.
    with world.tampered() as db:
        db.execute(update(BATCHES).where(BATCHES.c.id == batch.id).values(root=forged))
        db.execute(update(LOG).where(LOG.c.seq == 4).values(reason="x"))
        _expect(world, "entry 4 was altered: its contents no longer match its hash", capsys)


def _rehash_from(db: Any, seq: int) -> None:
    """Re-hash the chain from `seq` to the end, as an attacker covering an edit would."""
    rows = db.execute(select(LOG).where(LOG.c.seq >= seq - 1).order_by(LOG.c.seq))
    prev = rows[0].entry_hash
    for row in rows[1:]:
        fixed = dict(row._mapping, prev_hash=prev)
        fixed["entry_hash"] = log_store.recompute_hash(type("Row", (), fixed))
        db.execute(
            update(LOG)
            .where(LOG.c.seq == row.seq)
            .values(prev_hash=fixed["prev_hash"], entry_hash=fixed["entry_hash"])
        )
        prev = fixed["entry_hash"]
    db.execute(update(HEAD).values(last_hash=prev))


def test_an_altered_and_rehashed_entry_is_named(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    seq = world.last - 2  # not anchored yet: only the link of the next entry tells
    with world.tampered() as db:
        db.execute(update(LOG).where(LOG.c.seq == seq).values(purpose="curiosity"))
        (row,) = db.execute(select(LOG).where(LOG.c.seq == seq))
        db.execute(
            update(LOG).where(LOG.c.seq == seq).values(entry_hash=log_store.recompute_hash(row))
        )
        _expect(
            world,
            f"entry {seq} was altered and re-hashed: entry {seq + 1} no longer links to it",
            capsys,
        )
    # Re-hashing everything after an anchored entry leaves a consistent chain: the anchor tells.
    batch = world.batch_of(8)
    with world.tampered() as db:
        db.execute(update(LOG).where(LOG.c.seq == 8).values(purpose="curiosity"))
        _rehash_from(db, 8)
        _expect(
            world,
            f"entries {batch.first_seq} to {batch.last_seq} no longer match the root of batch "
            f"{batch.chain_batch_id} anchored in transaction {batch.tx_hash}: the log was "
            "rewritten and re-hashed within that batch",
            capsys,
        )


def test_the_cli_exits_1_with_one_sentence(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_cli, "build_runtime", lambda _settings: world.runtime)
    monkeypatch.setattr(world.runtime, "close", lambda: None)
    runner = CliRunner()
    intact = runner.invoke(app, ["audit", "verify"])
    assert intact.exit_code == 0, intact.output
    assert intact.output.strip().endswith(
        f"intact: {world.last} entries, {len(world.batches)} batches anchored"
    )
    with world.tampered() as db:
        db.execute(delete(LOG).where(LOG.c.seq == 12))
        broken = runner.invoke(app, ["audit", "verify"], env={"COLUMNS": "250"})
        assert broken.exit_code == 1
        assert broken.output.strip().splitlines()[-1] == (
            "entry 12 was removed: entry 13 does not link to entry 11"
        )
    assert runner.invoke(app, ["audit", "batches"], env={"COLUMNS": "250"}).exit_code == 0


def test_anchoring_refuses_a_broken_chain(world: World) -> None:
    signer = world.runtime.anchor_signer()
    assert signer is not None
    from crm_gateway.audit import AuditChainBroken

    with world.tampered() as db:
        db.execute(delete(LOG).where(LOG.c.seq == world.last - 1))
        with pytest.raises(AuditChainBroken, match=f"entry {world.last - 1} was removed"):
            world.runtime.anchorer.anchor(signer)


# --- customers verify --all, chain verify -------------------------------------------------------


def test_customers_verify_all_names_each_failing_record(
    client: TestClient,
    role_key: Callable[[str], dict[str, str]],
    runtime: Runtime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    steward = role_key("DATA_STEWARD")
    ids = []
    for n in range(3):
        response = client.post(
            "/v1/customers?wait=true", json={"email": f"p{n}@example.com"}, headers=steward
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["customer_id"])
    assert audit_cli.verify_customers(runtime) == 0
    assert "intact: 3 active records" in capsys.readouterr().out
    verified = [e for e in _entries(runtime) if e.action == "verify"]
    assert sorted(e.customer_id for e in verified) == sorted(ids)

    with runtime.session_factory() as session:
        record = session.get(CustomerRecord, ids[1])
        assert record is not None
        record.commitment = "0x" + "cd" * 32
        session.commit()
    assert audit_cli.verify_customers(runtime) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert f"{ids[1]}: the record does not match its stored commitment" in out
    assert "1 of 3 records fail" in out


def _entries(runtime: Runtime) -> list[AccessLogEntry]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(AccessLogEntry).order_by(AccessLogEntry.seq)))


def test_chain_verify_walks_every_block_and_deployment(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = world.runtime
    assert audit_cli.verify_the_chain(runtime) == 0
    head = runtime.chain.latest_block()
    assert f"intact: blocks 0 to {head} link back to genesis" in capsys.readouterr().out

    from crm_gateway.audit.chain_check import verify_chain

    batch = world.batches[0]
    report = verify_chain(
        runtime.chain,
        runtime.contracts.record,
        recorded={int(batch.block_number): ("0x" + "ee" * 32, "the anchor of batch 1")},
    )
    assert report.problem == (
        f"block {batch.block_number} is {batch.block_hash} on the chain, not 0x{'ee' * 32} "
        "where the anchor of batch 1 was mined: the chain was reorganised or replaced below it"
    )
    record = dataclasses.replace(runtime.contracts.record)
    record.contracts = dict(record.contracts)
    anchor = record.contracts["AuditAnchor"]
    record.contracts["AuditAnchor"] = dataclasses.replace(anchor, address="0x" + "12" * 20)
    report = verify_chain(runtime.chain, record)
    assert report.problem == (f"AuditAnchor has no code at its recorded address 0x{'12' * 20}")


def test_audit_anchor_command_anchors_and_reports_gas(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command runs the pipeline in-process (no gateway here) until the batches settle."""
    from eth_account import Account

    from crm_gateway.services.access import AccessService, Role
    from crm_gateway.services.operations import OperationService

    auditor = runtime.keystore.add(Account.create()).address
    runtime.chain.dev_fund(auditor, 10**20)
    operations = OperationService(runtime.session_factory, runtime.pipeline)
    write = AccessService(runtime.contracts, keystore=runtime.keystore).grant(
        str(runtime.contracts.record.deployer), Role.AUDITOR, auditor
    )
    view, _ = operations.submit(write, api_key_id=None, idempotency_key=None, payload=write.args)
    runtime.pipeline.drain(until=lambda: operations.get_internal(view.id).settled, timeout=20)
    log_many(runtime, 12)
    monkeypatch.setattr(audit_cli, "build_runtime", lambda _settings: runtime)
    monkeypatch.setattr(runtime, "close", lambda: None)
    runner = CliRunner()
    anchored = runner.invoke(app, ["audit", "anchor", "--as", auditor], env={"COLUMNS": "250"})
    assert anchored.exit_code == 0, anchored.output
    batches = runtime.anchorer.batches()
    assert [(b.status, b.first_seq, b.chain_batch_id) for b in batches] == [("anchored", 1, 1)]
    assert str(batches[0].gas_used) in anchored.output
    again = runner.invoke(app, ["audit", "anchor", "--as", auditor])
    assert again.exit_code == 0
    assert "nothing to anchor" in again.output
    # An account without AUDITOR is refused in one sentence.
    log_many(runtime, 1)
    refused = runner.invoke(
        app, ["audit", "anchor", "--as", str(runtime.contracts.record.deployer)]
    )
    assert refused.exit_code == 1
    assert "does not hold AUDITOR" in refused.output
