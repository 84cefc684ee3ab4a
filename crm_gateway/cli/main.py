"""The top-level commands: the toolchain (compile, node, deploy) and the gateway (serve, run)."""

from __future__ import annotations

import time

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from crm_gateway.chain.compiler import compile_contracts, stale_artifacts, write_artifacts
from crm_gateway.chain.connection import connect
from crm_gateway.chain.deployments import verify_record
from crm_gateway.cli import admin, audit, importer, index, keys
from crm_gateway.cli.common import console, fail, one_sentence_errors, settings
from crm_gateway.config import ChainKind, Settings
from crm_gateway.runtime import deploy as apply_deployment
from crm_gateway.runtime import deployment_store, open_keystore

app = typer.Typer(
    name="crm-chaincode",
    help="Admin commands of crm-chaincode: permissioned CRM chaincode on an EVM chain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(admin.orgs, name="orgs")
app.add_typer(admin.roles, name="roles")
app.add_typer(admin.apikeys, name="apikeys")
app.add_typer(admin.accounts, name="accounts")
app.add_typer(keys.keys, name="keys")
app.add_typer(index.index, name="index")
app.add_typer(audit.audit, name="audit")
app.add_typer(audit.customers, name="customers")
app.add_typer(audit.chain, name="chain")
app.command("import")(importer.import_command)


@app.command("compile")
def compile_command(
    check: bool = typer.Option(
        False, "--check", help="Only report stale artifacts; exit 1 if any."
    ),
) -> None:
    """Compile every contract under contracts/ into abi/<Contract>.json."""
    cfg = settings()
    with one_sentence_errors():
        if check:
            stale = stale_artifacts(cfg)
            if stale:
                fail(f"stale artifacts: {', '.join(stale)}; run `crm-chaincode compile`")
            console.print("artifacts are up to date")
            return
        with console.status("compiling with solc " + cfg.solc_version):
            artifacts = compile_contracts(cfg)
            paths = write_artifacts(artifacts, cfg)
    for artifact, path in zip(artifacts, paths, strict=True):
        size = (len(artifact.deployed_bytecode) - 2) // 2
        console.print(f"{artifact.contract_name:<28} {size:>6} bytes  {path.name}")


@app.command()
def deploy() -> None:
    """Apply pending migrations and record every contract in abi/deployments/<chain-id>.json."""
    cfg = settings()
    with one_sentence_errors():
        _deploy(cfg)


def _deploy(cfg: Settings) -> None:
    keystore = open_keystore(cfg)
    chain = connect(cfg)
    store = deployment_store(cfg, chain)
    verify_record(store.load(), chain, store.path)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console) as progress:
        task = progress.add_task(f"migrating chain {chain.chain_id}", total=None)

        def on_step(name: str, applied: bool) -> None:
            progress.console.print(f"  {'applied' if applied else 'already applied'}  {name}")
            progress.advance(task)

        report = apply_deployment(cfg, chain, keystore, on_step=on_step, store=store)
    table = Table("contract", "address", "block", title=f"chain {chain.chain_id}")
    for name, deployed in sorted(report.record.contracts.items()):
        table.add_row(name, deployed.address, str(deployed.block_number))
    console.print(table)
    if not report.applied:
        console.print("nothing to deploy: every migration was already applied")


@app.command()
def node() -> None:
    """Run the project's Anvil node in the foreground until Ctrl-C (state kept in a file)."""
    from crm_gateway.chain.anvil import AnvilNode

    cfg = settings()
    with one_sentence_errors(), AnvilNode(cfg) as anvil:
        console.print(f"Anvil listening on {anvil.url}, state in {cfg.path(cfg.anvil_state_file)}")
        console.print("press Ctrl-C to stop")
        try:
            while anvil.is_running:
                time.sleep(0.5)
            fail("Anvil exited on its own:\n" + anvil.log_tail())
        except KeyboardInterrupt:
            console.print("stopping Anvil")


WORKERS_OPTION = typer.Option(
    1,
    "--workers",
    min=1,
    max=64,
    help="API processes on one port. The pipeline, the indexer and anchoring still run once "
    "per organisation: in whichever process holds their lease, and in another if it dies.",
)


@app.command()
def serve(workers: int = WORKERS_OPTION) -> None:
    """Serve the gateway (the chain must be reachable and deployed)."""
    cfg = settings()
    with one_sentence_errors():
        _serve(cfg, workers)


def _serve(cfg: Settings, workers: int = 1) -> None:
    import uvicorn

    from crm_gateway.api.app import create_app
    from crm_gateway.logs import log_config

    # Refuses development secrets on CHAIN_KIND=rpc here, in one sentence, rather than as a
    # traceback from the app's start-up.
    open_keystore(cfg)
    if workers == 1:
        uvicorn.run(
            create_app(cfg),
            host=cfg.gateway_host,
            port=cfg.gateway_port,
            log_config=log_config(cfg.log_level),
            log_level=cfg.log_level,
            timeout_graceful_shutdown=5,
        )
        return
    if cfg.chain_kind is ChainKind.EMBEDDED:
        fail("--workers needs a chain the processes share: CHAIN_KIND=anvil or rpc")
    if ":memory:" in cfg.database_url or cfg.database_url.rstrip("/") == "sqlite:":
        fail("--workers needs a database the processes share, not an in-memory one")
    # Each worker process builds its own app (and runtime) from the same environment.
    uvicorn.run(
        "crm_gateway.api.app:create_app",
        factory=True,
        workers=workers,
        host=cfg.gateway_host,
        port=cfg.gateway_port,
        log_config=log_config(cfg.log_level),
        log_level=cfg.log_level,
        timeout_graceful_shutdown=5,
    )


@app.command()
def run(workers: int = WORKERS_OPTION) -> None:
    """Start Anvil (for CHAIN_KIND=anvil), apply pending migrations, serve the gateway."""
    from crm_gateway.chain.anvil import AnvilNode

    cfg = settings()
    with one_sentence_errors():
        if cfg.chain_kind is not ChainKind.ANVIL:
            if cfg.chain_kind is ChainKind.RPC:
                _deploy(cfg)
            _serve(cfg, workers)
            return
        with AnvilNode(cfg) as anvil:
            console.print(f"Anvil on {anvil.url}, state in {cfg.path(cfg.anvil_state_file)}")
            _deploy(cfg)
            console.print(
                f"gateway on http://{cfg.gateway_host}:{cfg.gateway_port} "
                f"(docs at /docs); Ctrl-C stops the gateway and Anvil"
            )
            _serve(cfg, workers)
