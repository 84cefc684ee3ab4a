"""Where a chain write stands, and the shared way every write endpoint answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field

from crm_gateway.api.deps import Caller, CallerDep
from crm_gateway.api.services import OperationsDep, RuntimeDep
from crm_gateway.pipeline.outbox import ChainWrite
from crm_gateway.services.errors import ChainRefusedError
from crm_gateway.services.operations import OperationService, OperationView

router = APIRouter(prefix="/v1/operations", tags=["operations"])


class OperationError(BaseModel):
    name: str = Field(description="The contract's custom error, decoded from the revert data.")
    args: dict[str, Any]


class OperationOut(BaseModel):
    id: str
    kind: str
    status: str = Field(description="pending, submitted, confirmed or failed")
    tx_hash: str | None
    nonce: int | None
    block_number: int | None
    block_hash: str | None
    gas_used: int | None
    error: OperationError | None
    result: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: OperationView) -> OperationOut:
        return cls.model_validate(view, from_attributes=True)


WaitQuery = Annotated[
    bool, Query(description="Wait for the receipt instead of answering 202 at once.")
]


@router.get("/{operation_id}", response_model=OperationOut)
def get_operation(operation_id: str, caller: CallerDep, operations: OperationsDep) -> OperationOut:
    """Where a write stands: pending, submitted, confirmed (block, tx hash) or failed (error)."""
    return OperationOut.of(operations.get(operation_id, caller.org_id))


def answer_write(
    write: ChainWrite,
    *,
    caller: Caller,
    idempotency_key: str | None,
    payload: Any,
    wait: bool,
    response: Response,
    operations: OperationService,
    runtime: RuntimeDep,
) -> OperationOut:
    """Queue a write and answer 202 with its operation, or wait for the receipt on `?wait=true`.

    A waited write that the chain refused answers 422 with the decoded custom error.
    """
    view, created = operations.submit(
        write, api_key_id=caller.api_key_id, idempotency_key=idempotency_key, payload=payload
    )
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    if wait and not view.settled:
        view = operations.wait(view.id, caller.org_id, runtime.settings.wait_timeout_seconds)
    response.headers["Location"] = f"/v1/operations/{view.id}"
    if view.status == "failed" and wait:
        error = view.error or {"name": "Reverted", "args": {}}
        raise ChainRefusedError(
            f"the chain refused {view.kind} with {error['name']}",
            operation_id=view.id,
            error=error,
        )
    response.status_code = status.HTTP_200_OK if view.settled else status.HTTP_202_ACCEPTED
    return OperationOut.of(view)
