"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from crm_gateway.api.services import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Ready when the chain answers, the contracts have code and the database answers."""
    checks: dict[str, Any] = {}
    ready = True
    chain = runtime.chain
    chain_info: dict[str, Any] = {
        "kind": chain.kind.value,
        "chain_id": chain.chain_id,
        "rpc_url": chain.rpc_url,
    }
    try:
        chain_info["latest_block"] = chain.latest_block()
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
    body = {
        "status": "ready" if ready else "not ready",
        "checks": checks,
        "chain": chain_info,
        "contracts": deployed,
    }
    return JSONResponse(body, status_code=200 if ready else 503)
