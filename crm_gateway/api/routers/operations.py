"""Where a chain write stands, and the shared way every write endpoint answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from crm_gateway.api.deps import Caller, CallerDep, IdempotencyKeyDep
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


@dataclass
class WriteRequest:
    """Everything a write endpoint shares: who asks, their idempotency key, and how to answer."""

    caller: Caller
    idempotency_key: str | None
    wait: bool
    response: Response
    operations: OperationService
    wait_timeout: float
    # Waits until the read model includes a block (None where no indexer runs).
    wait_for_index: Callable[[int, float], bool] | None = None

    def submit(
        self,
        write: ChainWrite,
        payload: Any,
        *,
        off_chain: Callable[[Session], None] | None = None,
    ) -> OperationView:
        """Queue a chain write; `off_chain` writes in the same transaction (an access-log entry,
        say) and is not run again for a replayed idempotency key."""
        view, created = self.operations.submit(
            write,
            api_key_id=self.caller.api_key_id,
            idempotency_key=self.idempotency_key,
            payload=payload,
            off_chain=off_chain,
        )
        if not created:
            self.response.headers["Idempotent-Replayed"] = "true"
        return view

    def settle(
        self, view: OperationView, *, location: str | None = None, settled_status: int = 200
    ) -> OperationView:
        """Wait for the receipt on `?wait=true`; set the status code and `Location`.

        Answers 202 while the write is pending; `settled_status` once it is confirmed; a waited
        write that the chain refused raises 422 with the decoded custom error.
        """
        if self.wait and not view.settled:
            view = self.operations.wait(view.id, self.caller.org_id, self.wait_timeout)
        if self.wait and view.block_number is not None and self.wait_for_index is not None:
            # Read your writes: a waited write answers once the read model (which answers the
            # hot reads, role checks among them) includes its block.
            self.wait_for_index(view.block_number, self.wait_timeout)
        self.response.headers["Location"] = location or f"/v1/operations/{view.id}"
        if view.status == "failed" and self.wait:
            error = view.error or {"name": "Reverted", "args": {}}
            raise ChainRefusedError(
                f"the chain refused {view.kind} with {error['name']}",
                operation_id=view.id,
                error=error,
            )
        self.response.status_code = settled_status if view.settled else status.HTTP_202_ACCEPTED
        return view

    def answer(
        self,
        write: ChainWrite,
        payload: Any,
        *,
        off_chain: Callable[[Session], None] | None = None,
    ) -> OperationOut:
        """Queue a write and answer with its operation."""
        return OperationOut.of(self.settle(self.submit(write, payload, off_chain=off_chain)))


def get_write_request(
    caller: CallerDep,
    idempotency_key: IdempotencyKeyDep,
    operations: OperationsDep,
    runtime: RuntimeDep,
    response: Response,
    wait: WaitQuery = False,
) -> WriteRequest:
    return WriteRequest(
        caller=caller,
        idempotency_key=idempotency_key,
        wait=wait,
        response=response,
        operations=operations,
        wait_timeout=runtime.settings.wait_timeout_seconds,
        wait_for_index=runtime.index_worker.wait_for_block
        if runtime.settings.indexer_enabled
        else None,
    )


WriteDep = Annotated[WriteRequest, Depends(get_write_request)]
