"""Liveness and readiness.

`/readyz` answers anyone, so it names no credential and no endpoint: not the RPC URL (which may
carry a user and password or an API token in its path or query), not the database URL, only
what is checked and whether it answered.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from crm_gateway.api.services import RuntimeDep

router = APIRouter(tags=["health"])


class HealthOut(BaseModel):
    status: Literal["ok"]


class ChainInfoOut(BaseModel):
    kind: str = Field(description="embedded, anvil or rpc")
    chain_id: int
    latest_block: int | None = None


class ReadinessOut(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description="chain, contracts, database: `ok` or what failed")
    chain: ChainInfoOut
    contracts: dict[str, str] = Field(description="Contract name -> address")


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> HealthOut:
    """The process is up."""
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=ReadinessOut,
    responses={503: {"model": ReadinessOut, "description": "Not ready: a check failed"}},
)
def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Ready when the chain answers, the contracts have code and the database answers."""
    checks: dict[str, str] = {}
    ready = True
    chain = runtime.chain
    chain_info = ChainInfoOut(kind=chain.kind.value, chain_id=chain.chain_id)
    try:
        chain_info.latest_block = chain.latest_block()
        checks["chain"] = "ok"
    except Exception as exc:
        ready = False
        checks["chain"] = f"unreachable: {type(exc).__name__}"
    deployed = runtime.contracts.deployed()
    if checks["chain"] == "ok":
        missing = [name for name, address in deployed.items() if not chain.has_code(address)]
        checks["contracts"] = "ok" if deployed and not missing else f"missing: {missing or 'all'}"
        ready = ready and checks["contracts"] == "ok"
    try:
        with runtime.session_factory() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        ready = False
        checks["database"] = f"unreachable: {type(exc).__name__}"
    body = ReadinessOut(
        status="ready" if ready else "not ready",
        checks=checks,
        chain=chain_info,
        contracts=dict(deployed),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)
