"""`crm-chaincode index`: run the indexer in the foreground, rebuild the read model, show status."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import sessionmaker

from crm_gateway.chain.artifacts import Artifacts
from crm_gateway.chain.connection import connect
from crm_gateway.chain.contracts import Contracts
from crm_gateway.chain.deployments import verify_record
from crm_gateway.cli.common import console, fail, one_sentence_errors, settings
from crm_gateway.config import ChainKind, Settings
from crm_gateway.indexer import ChainIndexer, StepResult
from crm_gateway.runtime import build_runtime, deployment_store
from crm_gateway.store.db import make_engine, upgrade_database

index = typer.Typer(help="The indexer: contract events into the read model.", no_args_is_help=True)


@contextlib.contextmanager
def _indexer(cfg: Settings) -> Iterator[ChainIndexer]:
    """An indexer on the configured chain and database; needs no signing keys."""
    if cfg.chain_kind is ChainKind.EMBEDDED:
        # The embedded chain exists only in this process (and deploys itself when built).
        runtime = build_runtime(cfg)
        try:
            yield runtime.index_worker.indexer
        finally:
            runtime.close()
        return
    chain = connect(cfg)
    store = deployment_store(cfg, chain)
    record = store.load()
    verify_record(record, chain, store.path)
    if not record.contracts:
        fail(f"nothing is deployed on chain {chain.chain_id}; run `crm-chaincode deploy`")
    upgrade_database(cfg.database_url)
    engine = make_engine(cfg.database_url, echo=cfg.database_echo)
    try:
        yield ChainIndexer(
            Contracts(chain, Artifacts(cfg.path(cfg.abi_dir)), record),
            sessionmaker(engine, expire_on_commit=False),
            max_block_range=cfg.indexer_max_block_range,
            reorg_depth=cfg.indexer_reorg_depth,
        )
    finally:
        engine.dispose()


def _describe(step: StepResult) -> str | None:
    if step.kind == "scanned":
        return f"blocks {step.from_block}..{step.to_block}: {step.events} new events"
    if step.kind == "rewound":
        return (
            f"{step.reason}: rewound from block {step.from_block} to {step.to_block}, "
            f"{step.removed} events removed"
        )
    if step.kind == "reset":
        return f"no common block with the chain: read model dropped ({step.removed} events)"
    return None


@index.command("run")
def run_command(
    until_head: bool = typer.Option(
        False, "--until-head", help="Exit once the read model is at the chain head."
    ),
) -> None:
    """Index in the foreground, printing each range, until Ctrl-C (or the head)."""
    cfg = settings()
    with one_sentence_errors(), _indexer(cfg) as indexer:
        console.print(f"indexing from block {indexer.start_block()}; Ctrl-C stops")
        try:
            while True:
                step = indexer.step()
                line = _describe(step)
                if line:
                    console.print(f"{line} (head {step.head})")
                if step.kind == "idle":
                    if until_head:
                        console.print(f"at the chain head, block {step.to_block}")
                        return
                    time.sleep(cfg.indexer_poll_seconds)
        except KeyboardInterrupt:
            console.print("stopped")


@index.command("rebuild")
def rebuild_command() -> None:
    """Drop the read model and index again from the deployment block, up to the chain head."""
    cfg = settings()
    with one_sentence_errors(), _indexer(cfg) as indexer:
        start = indexer.start_block()
        if start is None:
            fail("nothing is deployed; run `crm-chaincode deploy`")
        indexer.drop()
        head = indexer.contracts.chain.latest_block()
        events = 0
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("blocks, {task.fields[events]} events"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("indexing", total=max(0, head - start + 1), events=0)

            def on_step(step: StepResult) -> None:
                nonlocal events, head
                events += step.events
                if step.head is not None and step.head > head:
                    head = step.head
                    progress.update(task, total=head - start + 1)
                if step.to_block is not None:
                    progress.update(task, completed=step.to_block - start + 1, events=events)
                if step.kind in {"rewound", "reset"}:
                    progress.console.print(_describe(step))

            last = indexer.run_to_head(on_step)
        console.print(f"read model rebuilt up to block {last.to_block}: {events} events")


@index.command("status")
def status_command() -> None:
    """The cursor against the chain head, and the contracts the read model covers."""
    cfg = settings()
    with one_sentence_errors(), _indexer(cfg) as indexer:
        status = indexer.status()
    table = Table("", "value", title="read model", show_header=False)
    table.add_row("chain head", str(status.head))
    if status.cursor_block is None:
        table.add_row("cursor", "none (not indexed yet)")
    else:
        table.add_row("cursor", f"{status.cursor_block} {status.cursor_hash}")
        table.add_row("cursor block on chain", "yes" if status.on_chain else "NO (reorg pending)")
        if status.cursor_updated_at is not None:
            table.add_row("updated at", status.cursor_updated_at.isoformat(timespec="seconds"))
    table.add_row("behind the head", f"{status.lag} blocks")
    table.add_row("events", str(status.events))
    console.print(table)
    contracts = Table("contract", "address", "from block", "covered")
    for c in status.contracts:
        contracts.add_row(c.name, c.address, str(c.from_block), "yes" if c.covered else "not yet")
    console.print(contracts)
