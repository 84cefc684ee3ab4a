"""Consortium administration from the command line: accounts, organisations, roles, API keys.

Chain writes go through the same outbox and pipeline as the gateway's, run here in-process until
the write is confirmed, so a command and a running gateway never hand out the same nonce.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from eth_utils.address import is_address, to_checksum_address
from rich.table import Table

from crm_gateway.cli.common import console, fail, one_sentence_errors, settings
from crm_gateway.config import ChainKind
from crm_gateway.pipeline.outbox import ChainWrite
from crm_gateway.runtime import Runtime, build_runtime, open_keystore
from crm_gateway.security.apikeys import create_api_key, revoke
from crm_gateway.services.access import AccessService, ProposalKind, Role
from crm_gateway.services.operations import OperationService, OperationView
from crm_gateway.store.models import ApiKey

orgs = typer.Typer(help="Organisations of the consortium and the proposals that change them.")
roles = typer.Typer(help="Role grants within an organisation.")
apikeys = typer.Typer(help="API keys of CRM applications.")
accounts = typer.Typer(help="Signer accounts in the local encrypted keystore.")

AS_OPTION = typer.Option(
    None, "--as", help="Signing account (default: the deployer, admin of the founding org)."
)


@contextmanager
def _runtime() -> Iterator[Runtime]:
    with one_sentence_errors():
        runtime = build_runtime(settings())
        try:
            yield runtime
        finally:
            runtime.close()


def _actor(runtime: Runtime, explicit: str | None) -> str:
    if explicit:
        if not is_address(explicit):
            fail(f"--as {explicit} is not an Ethereum address")
        return to_checksum_address(explicit)
    deployer = runtime.settings.deployer_account or runtime.contracts.record.deployer
    if deployer is None:
        fail("no signing account: pass --as or set DEPLOYER_ACCOUNT")
    return to_checksum_address(deployer)


def _submit(runtime: Runtime, write: ChainWrite) -> OperationView:
    """Queue one chain write and run the pipeline here until it settles."""
    service = OperationService(runtime.session_factory, runtime.pipeline)
    view, _created = service.submit(
        write, api_key_id=None, idempotency_key=None, payload=write.args
    )
    with console.status(f"{write.kind}: waiting for the chain"):
        runtime.pipeline.drain(
            until=lambda: service.get_internal(view.id).settled,
            timeout=runtime.settings.wait_timeout_seconds,
        )
    view = service.get_internal(view.id)
    if view.status == "failed" and view.error:
        fail(f"the chain refused {write.kind}: {view.error['name']} {view.error['args']}")
    if not view.settled:
        fail(f"{write.kind} is still {view.status} after {runtime.settings.wait_timeout_seconds}s")
    console.print(f"{write.kind} confirmed in block {view.block_number} (tx {view.tx_hash})")
    return view


def _role(name: str) -> Role:
    try:
        return Role(name.upper())
    except ValueError:
        fail(f"unknown role {name}; expected one of {', '.join(r.value for r in Role)}")


def _address(value: str, what: str) -> str:
    if not is_address(value):
        fail(f"{what} {value} is not an Ethereum address")
    return to_checksum_address(value)


def _org_id(access: AccessService, value: str) -> int:
    if value.isdigit():
        access.organization(int(value))
        return int(value)
    for org in access.organizations():
        if org.name == value:
            return org.id
    fail(f"no organisation named {value}")


# --- accounts ---------------------------------------------------------------------------------


@accounts.command("new")
def accounts_new() -> None:
    """Create a signer key in the encrypted keystore and print its address."""
    with one_sentence_errors():
        account = open_keystore(settings()).create()
    console.print(account.address)


@accounts.command("list")
def accounts_list() -> None:
    """List the addresses in the keystore."""
    with one_sentence_errors():
        for address in open_keystore(settings()).addresses():
            console.print(address)


# --- organisations ----------------------------------------------------------------------------


@orgs.command("list")
def orgs_list() -> None:
    """List every organisation with its admin and status."""
    with _runtime() as runtime:
        table = Table("id", "name", "admin", "active", "members")
        for org in AccessService(runtime.contracts).organizations():
            table.add_row(
                str(org.id),
                org.name,
                org.admin,
                "yes" if org.active else "suspended",
                str(len(org.members)),
            )
        console.print(table)


@orgs.command("propose-add")
def orgs_propose_add(name: str, admin: str, as_: str | None = AS_OPTION) -> None:
    """Propose a new organisation NAME with ADMIN as its first ORG_ADMIN."""
    with _runtime() as runtime:
        access = AccessService(runtime.contracts)
        write = access.propose(
            _actor(runtime, as_),
            ProposalKind.ADD_ORGANIZATION,
            {"name": name, "admin": _address(admin, "admin")},
        )
        _print_proposal(_submit(runtime, write))


@orgs.command("propose-suspend")
def orgs_propose_suspend(org: str, as_: str | None = AS_OPTION) -> None:
    """Propose suspending organisation ORG (id or name)."""
    with _runtime() as runtime:
        access = AccessService(runtime.contracts)
        write = access.propose(
            _actor(runtime, as_),
            ProposalKind.SUSPEND_ORGANIZATION,
            {"organization_id": _org_id(access, org)},
        )
        _print_proposal(_submit(runtime, write))


@orgs.command("approve")
def orgs_approve(proposal_id: int, as_: str | None = AS_OPTION) -> None:
    """Approve proposal PROPOSAL_ID on behalf of your organisation."""
    with _runtime() as runtime:
        _submit(
            runtime, AccessService(runtime.contracts).approve(_actor(runtime, as_), proposal_id)
        )


@orgs.command("execute")
def orgs_execute(proposal_id: int, as_: str | None = AS_OPTION) -> None:
    """Execute proposal PROPOSAL_ID once enough organisations approved it."""
    with _runtime() as runtime:
        _submit(
            runtime, AccessService(runtime.contracts).execute(_actor(runtime, as_), proposal_id)
        )


def _print_proposal(view: OperationView) -> None:
    for event in (view.result or {}).get("events", []):
        if event["event"] == "ProposalCreated":
            console.print(f"proposal {event['args']['proposalId']} created")


# --- roles ------------------------------------------------------------------------------------


@roles.command("grant")
def roles_grant(role: str, account: str, as_: str | None = AS_OPTION) -> None:
    """Grant ROLE to ACCOUNT (which joins your organisation)."""
    with _runtime() as runtime:
        access = AccessService(runtime.contracts, keystore=runtime.keystore)
        _submit(
            runtime, access.grant(_actor(runtime, as_), _role(role), _address(account, "account"))
        )


@roles.command("revoke")
def roles_revoke(role: str, account: str, as_: str | None = AS_OPTION) -> None:
    """Revoke ROLE from ACCOUNT of your organisation."""
    with _runtime() as runtime:
        access = AccessService(runtime.contracts)
        _submit(
            runtime, access.revoke(_actor(runtime, as_), _role(role), _address(account, "account"))
        )


@roles.command("list")
def roles_list(
    org: str | None = typer.Option(None, "--org", help="Organisation id or name."),
) -> None:
    """List role holders, optionally of one organisation."""
    with _runtime() as runtime:
        access = AccessService(runtime.contracts)
        org_id = _org_id(access, org) if org else None
        table = Table("account", "role", "org", "active")
        for holding in access.holdings(org_id):
            table.add_row(
                holding.account,
                holding.role.value,
                str(holding.organization_id),
                "yes" if holding.active else "no",
            )
        console.print(table)


# --- API keys ---------------------------------------------------------------------------------


@apikeys.command("create")
def apikeys_create(
    org: str = typer.Option(..., "--org", help="Organisation id or name."),
    role: str = typer.Option(..., "--role", help="The role the key's account must hold."),
    account: str | None = typer.Option(
        None,
        "--account",
        help="Existing account holding ROLE; default: a new keystore account granted ROLE.",
    ),
    label: str | None = typer.Option(None, "--label", help="A note to recognise the key by."),
    as_: str | None = AS_OPTION,
) -> None:
    """Create an API key bound to an organisation and an on-chain account; print it once."""
    role_enum = _role(role)
    with _runtime() as runtime:
        access = AccessService(runtime.contracts, keystore=runtime.keystore)
        org_id = _org_id(access, org)
        bound: str
        if account is None:
            new_account = runtime.keystore.create()
            if runtime.chain.kind is not ChainKind.RPC:
                runtime.chain.dev_fund(new_account.address, runtime.settings.dev_fund_wei)
            bound = new_account.address
            actor = _actor(runtime, as_)
            if access.organization_of(actor) != org_id:
                fail(f"the signing account {actor} is not in organisation {org}; pass --as")
            _submit(runtime, access.grant(actor, role_enum, bound))
        else:
            bound = _address(account, "account")
        if access.organization_of(bound) != org_id or not access.has_role(role_enum, bound):
            fail(f"account {bound} does not hold {role_enum.value} in organisation {org}")
        with runtime.session_factory() as session:
            key, plaintext = create_api_key(
                session, org_id=org_id, account=bound, role=role_enum.value, label=label
            )
            session.commit()
            key_id = key.id
    console.print(f"API key {key_id} for account {bound} ({role_enum.value}, org {org_id}):")
    console.print(plaintext, highlight=False, soft_wrap=True)
    console.print("[dim]store it now: it is shown only once[/]")


@apikeys.command("list")
def apikeys_list() -> None:
    """List API keys (never the keys themselves)."""
    with _runtime() as runtime, runtime.session_factory() as session:
        table = Table("id", "prefix", "org", "account", "role", "label", "revoked")
        for key in session.query(ApiKey).order_by(ApiKey.created_at):
            table.add_row(
                key.id,
                key.prefix,
                str(key.org_id),
                key.account,
                key.role,
                key.label or "",
                "yes" if key.revoked_at else "",
            )
        console.print(table)


@apikeys.command("revoke")
def apikeys_revoke(key_id: str) -> None:
    """Revoke an API key by its id."""
    with _runtime() as runtime, runtime.session_factory() as session:
        if revoke(session, key_id) is None:
            fail(f"no API key with id {key_id}")
        session.commit()
    console.print(f"API key {key_id} revoked")
