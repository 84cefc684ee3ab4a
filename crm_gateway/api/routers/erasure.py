"""`/v1/erasure-requests`: the organisation's side of the erasure requests customers sign in the
portal (DATA_STEWARD keys): list them, carry one out, or refuse it with a reason."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from crm_gateway.api.deps import Caller, CallerDep
from crm_gateway.api.schemas import StrictModel
from crm_gateway.api.services import RuntimeDep, customer_service, operation_service
from crm_gateway.runtime import Runtime
from crm_gateway.services.customers import Actor
from crm_gateway.services.erasure import ErasureService
from crm_gateway.store.erasure import ErasureStatus

router = APIRouter(prefix="/v1/erasure-requests", tags=["erasure requests"])


def erasure_service(runtime: Runtime) -> ErasureService:
    return ErasureService(
        sessions=runtime.session_factory,
        contracts=runtime.contracts,
        customers=customer_service(runtime),
        operations=operation_service(runtime),
        roles=runtime.read_model,
        gateway_org_id=runtime.settings.gateway_org_id,
        signature_ttl_seconds=runtime.settings.signature_ttl_seconds,
    )


def get_erasure_service(runtime: RuntimeDep) -> ErasureService:
    return erasure_service(runtime)


ErasureDep = Annotated[ErasureService, Depends(get_erasure_service)]
RequestId = Annotated[str, Path(min_length=1, max_length=36)]


class ErasureRequestOut(BaseModel):
    id: str
    customer_id: str
    org_id: int
    wallet: str
    requested_at: str
    status: str = Field(description="requested, in_progress, done or refused")
    reason: str | None
    operation_id: str | None
    updated_at: str


class RefusalIn(StrictModel):
    reason: str = Field(min_length=1, max_length=2000, description="Shown to the customer")


def _actor(caller: Caller) -> Actor:
    return Actor(api_key_id=caller.api_key_id, org_id=caller.org_id, account=caller.account)


@router.get("", response_model=list[ErasureRequestOut])
def list_requests(
    caller: CallerDep,
    erasure: ErasureDep,
    status: Annotated[ErasureStatus | None, Query()] = None,
) -> list[dict[str, Any]]:
    """This organisation's erasure requests (DATA_STEWARD)."""
    return erasure.pending(_actor(caller), status)


@router.post("/{request_id}/completion", response_model=ErasureRequestOut)
def carry_out(request_id: RequestId, caller: CallerDep, erasure: ErasureDep) -> dict[str, Any]:
    """Erase the customer as asked (crypto-shredding and the on-chain erasure; DATA_STEWARD)."""
    return erasure.carry_out(_actor(caller), request_id)


@router.post("/{request_id}/refusal", response_model=ErasureRequestOut)
def refuse(
    request_id: RequestId, body: RefusalIn, caller: CallerDep, erasure: ErasureDep
) -> dict[str, Any]:
    """Refuse the request with a reason the customer sees (DATA_STEWARD)."""
    return erasure.refuse(_actor(caller), request_id, body.reason)
