"""`/v1/console/...`: the operators' console signs in with an API key, held in the session.

The key is posted once and kept on the server; the page holds only the HttpOnly cookie and the
CSRF token, and calls the API's own endpoints (approve, execute, anchor ...) with them, where
`require_api_key` authenticates the session's key and every role check applies as usual.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from crm_gateway.api.deps import CallerDep, _lookup
from crm_gateway.api.errors import Unauthorized, problem_responses
from crm_gateway.api.routers.audit import AuditDep, actor_of
from crm_gateway.api.schemas import StrictModel
from crm_gateway.api.services import RuntimeDep
from crm_gateway.api.sessions import (
    clear_session_cookie,
    require_web_session,
    session_store,
    set_session_cookie,
)
from crm_gateway.runtime import Runtime
from crm_gateway.services.console import ConsoleService
from crm_gateway.store.models import OperationStatus

# 401: no console session or a bad key; 403: a write without its CSRF token, or a missing role.
router = APIRouter(prefix="/v1/console", tags=["console"], responses=problem_responses(401, 403))


def get_console_service(runtime: RuntimeDep) -> ConsoleService:
    return ConsoleService(
        contracts=runtime.contracts, sessions=runtime.session_factory, anchorer=runtime.anchorer
    )


ConsoleDep = Annotated[ConsoleService, Depends(get_console_service)]


class ConsoleSignInIn(StrictModel):
    api_key: str = Field(min_length=1, max_length=200, description="The key (`crm_...`)")


class ConsoleSessionOut(BaseModel):
    org_id: int
    account: str
    key_role: str
    roles: list[str] = Field(description="The roles the key's account holds on-chain now")
    csrf_token: str | None = Field(description="Send it in `X-CSRF-Token` with every write")


def _roles(runtime: Runtime, account: str) -> list[str]:
    return [view.role for view in runtime.read_model.roles_of(account) if view.active]


@router.post("/session", response_model=ConsoleSessionOut)
async def console_sign_in(
    body: ConsoleSignInIn, request: Request, response: Response, runtime: RuntimeDep
) -> ConsoleSessionOut:
    """Sign the console in with an API key; sets the HttpOnly session cookie."""
    caller = await run_in_threadpool(_lookup, request.app.state.session_factory, body.api_key)
    if caller is None:
        raise Unauthorized("invalid API key")
    # The session stands for the key by its id: the key itself is never stored.
    session = session_store(request).create("console", caller.api_key_id)
    set_session_cookie(response, runtime.settings, "console", session)
    return ConsoleSessionOut(
        org_id=caller.org_id,
        account=caller.account,
        key_role=caller.role,
        roles=_roles(runtime, caller.account),
        csrf_token=session.csrf_token,
    )


@router.get("/session", response_model=ConsoleSessionOut)
def console_session(request: Request, caller: CallerDep, runtime: RuntimeDep) -> ConsoleSessionOut:
    """Who the console is signed in as, and the session's CSRF token."""
    session = require_web_session(request, "console")
    return ConsoleSessionOut(
        org_id=caller.org_id,
        account=caller.account,
        key_role=caller.role,
        roles=_roles(runtime, caller.account),
        csrf_token=session.csrf_token,
    )


@router.delete("/session", status_code=204, response_class=Response)
def console_sign_out(request: Request) -> Response:
    """End the console's session."""
    session = require_web_session(request, "console")
    session_store(request).end(session.id)
    response = Response(status_code=204)
    clear_session_cookie(response, "console")
    return response


class ChainTxOut(BaseModel):
    hash: str
    sender: str = Field(alias="from")
    to: str | None
    contract: str | None
    function: str | None
    nonce: int


class BlockOut(BaseModel):
    number: int
    hash: str
    timestamp: int
    gas_used: int
    transactions: list[ChainTxOut]


class ChainOut(BaseModel):
    chain_id: int
    head: int
    blocks: list[BlockOut]


@router.get("/chain", response_model=ChainOut, response_model_by_alias=True)
def chain(
    _caller: CallerDep,
    console: ConsoleDep,
    blocks: Annotated[int, Query(ge=1, le=50)] = 10,
) -> dict[str, Any]:
    """The chain head and the latest blocks with their transactions (any key)."""
    return console.chain(blocks)


class ProposalOut(BaseModel):
    id: int
    kind: str
    proposer_org: int
    proposer: str
    expires_at: int
    approvals: int
    required_approvals: int
    approved_by_you: bool
    status: str = Field(description="pending, ready, executed or expired")


class ProposalsOut(BaseModel):
    proposals: list[ProposalOut]


@router.get("/proposals", response_model=ProposalsOut)
def proposals(caller: CallerDep, console: ConsoleDep) -> dict[str, Any]:
    """The consortium's proposals, newest first (any key; approving needs ORG_ADMIN)."""
    return console.proposals(caller.org_id)


class PipelineOpOut(BaseModel):
    id: str
    kind: str
    status: str
    sender: str
    key_role: str
    tx_hash: str | None
    error: dict[str, Any] | None
    created_at: str
    updated_at: str


class PipelineOut(BaseModel):
    counts: dict[str, int]
    operations: list[PipelineOpOut]


@router.get("/pipeline", response_model=PipelineOut)
def pipeline(
    caller: CallerDep,
    console: ConsoleDep,
    status: Annotated[OperationStatus | None, Query()] = None,
) -> dict[str, Any]:
    """Your organisation's latest writes: pending, submitted, confirmed, failed (decoded)."""
    return console.pipeline(caller.org_id, status)


class VerifyPartOut(BaseModel):
    intact: bool
    summary: str


class AuditVerifyOut(VerifyPartOut):
    entries: int
    batches: int


class ChainVerifyOut(VerifyPartOut):
    head: int
    blocks: int


class VerifyOut(BaseModel):
    audit: AuditVerifyOut = Field(description="As `crm-chaincode audit verify`")
    chain: ChainVerifyOut = Field(description="As `crm-chaincode chain verify`")


@router.get("/verify", response_model=VerifyOut)
def verify(caller: CallerDep, console: ConsoleDep, audit: AuditDep) -> dict[str, Any]:
    """Walk the access log and its anchors, and the chain's headers (AUDITOR or DATA_STEWARD)."""
    audit.authorise(actor_of(caller))
    return console.verify(caller.org_id)
