"""Integrity commands: `audit anchor|verify|batches`, `customers verify --all`, `chain verify`.

Each checks one layer and exits 1 naming the first thing wrong in one sentence:

* `audit verify`: the access log's hash chain, entry by entry, and every anchored batch against
  its root on-chain;
* `customers verify --all`: every active customer record against its commitment on-chain;
* `chain verify`: every block's parent link back to genesis, every recorded deployment's code.

`audit anchor` queues the anchoring of every entry not yet anchored and runs the pipeline here
until the batches are settled, like the other admin commands.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from eth_utils.address import is_address, to_checksum_address
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crm_gateway.audit import ANCHOR_CONTRACT, BatchView, LogVerifier
from crm_gateway.audit.chain_check import recorded_anchors, verify_chain
from crm_gateway.cli.common import console, fail, one_sentence_errors, settings
from crm_gateway.runtime import Runtime, build_runtime
from crm_gateway.services.customers import Actor, CustomerService
from crm_gateway.services.operations import OperationService
from crm_gateway.services.policy import VERIFY_POLICY
from crm_gateway.store import audit as log_store
from crm_gateway.store.models import AuditBatchStatus

audit = typer.Typer(help="The anchored access log: anchor it on-chain, verify it.")
customers = typer.Typer(help="Customer records against their on-chain commitments.")
chain = typer.Typer(help="The chain the gateway runs on.")


@contextmanager
def _runtime() -> Iterator[Runtime]:
    with one_sentence_errors():
        runtime = build_runtime(settings())
        try:
            yield runtime
        finally:
            runtime.close()


def _progress(label: str) -> Progress:
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


# --- audit ------------------------------------------------------------------------------------


def _batch_table(batches: list[BatchView]) -> Table:
    table = Table("batch", "entries", "count", "root", "status", "tx", "block", "gas")
    for batch in batches:
        table.add_row(
            str(batch.chain_batch_id or "-"),
            f"{batch.first_seq}..{batch.last_seq}",
            str(batch.count),
            batch.root[:18] + "…",
            batch.status if batch.error is None else f"{batch.status}: {batch.error}",
            batch.tx_hash or "",
            str(batch.block_number or ""),
            str(batch.gas_used or ""),
        )
    return table


@audit.command("anchor")
def anchor_command(
    as_: str | None = typer.Option(
        None,
        "--as",
        help="Signing account, holding AUDITOR in GATEWAY_ORG_ID (default: AUDIT_ANCHOR_ACCOUNT, "
        "else the first keystore account that holds it).",
    ),
) -> None:
    """Anchor every access-log entry not yet anchored: one transaction per batch."""
    with _runtime() as runtime:
        anchor(runtime, as_)


def anchor(runtime: Runtime, signer: str | None) -> list[BatchView]:
    if not runtime.anchorer.deployed:
        fail(f"{ANCHOR_CONTRACT} is not deployed on this chain; run `crm-chaincode deploy`")
    if signer is not None and not is_address(signer):
        fail(f"--as {signer} is not an Ethereum address")
    account = to_checksum_address(signer) if signer else runtime.anchor_signer()
    if account is None:
        fail(
            f"no keystore account holds AUDITOR in organisation "
            f"{runtime.settings.gateway_org_id}: pass --as or set AUDIT_ANCHOR_ACCOUNT"
        )
    batches = runtime.anchorer.anchor(account)
    if not batches:
        runtime.anchorer.refresh()
        console.print("nothing to anchor: every entry is anchored or being anchored")
        return []
    service = OperationService(runtime.session_factory, runtime.pipeline)
    ids = {b.operation_id for b in batches}
    with console.status(f"anchoring {len(batches)} batch(es): waiting for the chain"):
        runtime.pipeline.drain(
            until=lambda: all(service.get_internal(i).settled for i in ids),
            timeout=runtime.settings.wait_timeout_seconds,
        )
    runtime.anchorer.refresh()
    settled = [b for b in runtime.anchorer.batches() if b.operation_id in ids]
    console.print(_batch_table(settled))
    failed = [b for b in settled if b.status == AuditBatchStatus.FAILED.value]
    if failed:
        first = failed[0]
        fail(f"the batch of entries {first.first_seq}..{first.last_seq} failed: {first.error}")
    pending = [b for b in settled if b.status == AuditBatchStatus.PENDING.value]
    if pending:
        fail(
            f"{len(pending)} batch(es) still pending after {runtime.settings.wait_timeout_seconds}s"
        )
    return settled


@audit.command("supersede")
def supersede_command(
    batch_id: int,
    as_: str | None = typer.Option(
        None,
        "--as",
        help="Signing account, an ORG_ADMIN of GATEWAY_ORG_ID (default: the deployer).",
    ),
) -> None:
    """Supersede BATCH_ID, the organisation's latest batch on-chain, anchored by someone else
    (a misbehaving AUDITOR, far ahead of the log); anchoring then goes on from the log's end."""
    from crm_gateway.cli.admin import _actor, _submit

    with _runtime() as runtime:
        write = runtime.anchorer.supersede(_actor(runtime, as_), batch_id)
        _submit(runtime, write)
    console.print(f"batch {batch_id} superseded")


@audit.command("batches")
def batches_command() -> None:
    """Every anchoring batch: range, root, status, transaction, gas."""
    with _runtime() as runtime:
        runtime.anchorer.refresh()
        console.print(_batch_table(runtime.anchorer.batches()))


@audit.command("verify")
def verify_command() -> None:
    """Walk the whole log and every anchor; exit 1 naming the first entry altered, removed or
    reordered, or the first anchored root edited."""
    with _runtime() as runtime:
        code = verify_log(runtime)
    if code:
        raise typer.Exit(code)


def verify_log(runtime: Runtime) -> int:
    """Print the verdict on the access log; 0 when intact, 1 otherwise."""
    runtime.anchorer.refresh()
    anchor = runtime.contracts[ANCHOR_CONTRACT] if runtime.anchorer.deployed else None
    verifier = LogVerifier(
        runtime.session_factory, anchor=anchor, org_id=runtime.settings.gateway_org_id
    )
    with runtime.session_factory() as session:
        total = log_store.read_head(session).last_seq
    with _progress("verifying the access log") as progress:
        task = progress.add_task("verify", total=total)
        report = verifier.verify(lambda done, _total: progress.update(task, completed=done))
    if report.intact:
        console.print(report.summary)
        return 0
    console.print(f"[bold red]{report.summary}[/]", highlight=False, soft_wrap=True)
    return 1


# --- customers --------------------------------------------------------------------------------


@customers.command("verify")
def customers_verify_command(
    all_: bool = typer.Option(False, "--all", help="Every active record of this organisation."),
) -> None:
    """Check every active customer record against its commitment on-chain; exit 1 if any fails."""
    if not all_:
        fail("give --all (one record: GET /v1/customers/{id}/verify)", code=2)
    with _runtime() as runtime:
        code = verify_customers(runtime)
    if code:
        raise typer.Exit(code)


def verify_customers(runtime: Runtime) -> int:
    cfg = runtime.settings
    service = CustomerService(
        sessions=runtime.session_factory,
        contracts=runtime.contracts,
        operations=OperationService(runtime.session_factory, runtime.pipeline),
        vault=runtime.vault,
        indexer=runtime.indexer,
        gateway_org_id=cfg.gateway_org_id,
        phone_region=cfg.default_phone_region,
        signature_ttl_seconds=cfg.signature_ttl_seconds,
        consent=VERIFY_POLICY,
    )
    deployer = cfg.deployer_account or runtime.contracts.record.deployer
    actor = Actor(api_key_id=None, org_id=cfg.gateway_org_id, account=deployer or "")
    with _progress("verifying customer records") as progress:
        task = progress.add_task("verify", total=None)
        report = service.verify_all(actor, on_progress=lambda n: progress.update(task, completed=n))
    if not report.failures:
        console.print(
            f"intact: {report.checked} active records match their commitments "
            f"on-chain (block {report.block})"
        )
        return 0
    for customer_id, reason in report.failures:
        console.print(f"{customer_id}: {reason}", highlight=False, soft_wrap=True)
    console.print(
        f"[bold red]{len(report.failures)} of {report.checked} records fail their on-chain "
        f"commitment check (block {report.block})[/]"
    )
    return 1


# --- chain ------------------------------------------------------------------------------------


@chain.command("verify")
def chain_verify_command() -> None:
    """Check that every block links back to genesis and every recorded contract has its code."""
    with _runtime() as runtime:
        code = verify_the_chain(runtime)
    if code:
        raise typer.Exit(code)


def verify_the_chain(runtime: Runtime) -> int:
    recorded = recorded_anchors(runtime.session_factory)
    with _progress("walking the chain's blocks") as progress:
        task = progress.add_task("blocks", total=None)
        report = verify_chain(
            runtime.chain,
            runtime.contracts.record,
            recorded=recorded,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if report.intact:
        console.print(report.summary)
        return 0
    console.print(f"[bold red]{report.summary}[/]", highlight=False, soft_wrap=True)
    return 1
