"""Audit: the hash-chained access log, its on-chain anchors, inclusion proofs, customer timelines.

AUDITOR and DATA_STEWARD keys read the log, proofs and timelines (none holds personal data);
AUDITOR keys anchor on demand; any key may check a proof.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, Field

from crm_gateway.api.deps import Caller, CallerDep
from crm_gateway.api.errors import problem_responses
from crm_gateway.api.routers.operations import WaitQuery
from crm_gateway.api.schemas import MAX_STORED_INT, Bytes32Hex, StrictModel
from crm_gateway.api.services import OperationsDep, RuntimeDep
from crm_gateway.audit.anchoring import BatchView
from crm_gateway.runtime import Runtime
from crm_gateway.services.audit import AuditActor, AuditService

router = APIRouter(tags=["audit"])

Hex32 = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{64}$")]
Seq = Annotated[int, Field(ge=1, le=2**63 - 1)]


def get_audit_service(runtime: RuntimeDep) -> AuditService:
    return AuditService(
        sessions=runtime.session_factory,
        contracts=runtime.contracts,
        read_model=runtime.read_model,
        anchorer=runtime.anchorer,
        gateway_org_id=runtime.settings.gateway_org_id,
    )


AuditDep = Annotated[AuditService, Depends(get_audit_service)]


def actor_of(caller: Caller) -> AuditActor:
    return AuditActor(api_key_id=caller.api_key_id, org_id=caller.org_id, account=caller.account)


class EntryOut(BaseModel):
    seq: int
    at: datetime
    api_key_id: str | None
    org_id: int | None
    account: str | None
    customer_id: str | None
    purpose: str | None
    action: str
    decision: str
    reason: str | None
    prev_hash: str | None
    entry_hash: str | None


class LogEntryOut(EntryOut):
    anchor: dict[str, Any] = Field(
        description="The anchoring batch (`batch_id`, `tx_hash`, `proof_url`), or anchored=false"
    )


class ChainHeadOut(BaseModel):
    seq: int
    entry_hash: str


class LogOut(BaseModel):
    entries: list[LogEntryOut]
    next_from_seq: int | None = Field(description="Pass as from_seq for the next page")
    head: ChainHeadOut


class BatchOut(BaseModel):
    id: int
    first_seq: int
    last_seq: int
    count: int
    root: str
    status: str = Field(description="pending, anchored or failed")
    operation_id: str
    contract: str
    chain_batch_id: int | None
    tx_hash: str | None
    block_number: int | None
    block_hash: str | None
    gas_used: int | None
    error: str | None
    created_at: datetime
    anchored_at: datetime | None

    @classmethod
    def of(cls, view: BatchView) -> BatchOut:
        return cls.model_validate(view, from_attributes=True)


class AnchorsOut(BaseModel):
    batches: list[BatchOut]


class ProofBatchOut(BaseModel):
    id: int | None
    first_seq: int
    last_seq: int
    count: int


class AnchorTxOut(BaseModel):
    contract: str
    batch_id: int | None
    tx_hash: str | None
    block_number: int | None
    block_hash: str | None
    chain_id: int


class ProofOut(BaseModel):
    entry: EntryOut
    leaf: str = Field(description="keccak256(keccak256(abi.encode(uint256 seq, bytes32 hash)))")
    proof: list[str] = Field(description="Sibling hashes from the leaf up (sorted-pair hashing)")
    root: str
    batch: ProofBatchOut
    anchor: AnchorTxOut


class ProofIn(StrictModel):
    batch_id: int = Field(
        ge=1, le=MAX_STORED_INT, description="The AuditAnchor contract's batch id"
    )
    proof: list[Hex32] = Field(max_length=64)
    leaf: Hex32 | None = None
    seq: Seq | None = None
    entry_hash: Annotated[str, Field(pattern=r"^(0x)?[0-9a-fA-F]{64}$")] | None = None
    root: Hex32 | None = Field(default=None, description="Default: the root on-chain")


class ProofCheckOut(BaseModel):
    valid: bool = Field(description="Both checks passed")
    python: bool = Field(description="The proof leads from the leaf to the root (in Python)")
    contract: bool = Field(description="AuditAnchor.verify (and verifyEntry) answered true")
    leaf: str
    computed_root: str
    root: str
    root_on_chain: str
    batch_id: int
    contract_address: str


class TimelineOut(BaseModel):
    customer_id: str
    as_of_block: int | None = Field(description="The read model's block the events are as of")
    items: list[dict[str, Any]] = Field(
        description="On-chain events (with tx hash and block) and access-log entries (with seq "
        "and their anchoring batch), oldest first"
    )


def _bytes(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


@router.get("/v1/audit/log", response_model=LogOut)
def audit_log(
    caller: CallerDep,
    audit: AuditDep,
    customer: Annotated[Bytes32Hex | None, Query(description="Only this customer's")] = None,
    from_seq: Annotated[int, Query(ge=1, le=2**63 - 1)] = 1,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
) -> LogOut:
    """The access log from `from_seq` on (AUDITOR, DATA_STEWARD), each entry with its hashes
    and its anchoring batch."""
    return LogOut.model_validate(
        audit.log(actor_of(caller), customer_id=customer, from_seq=from_seq, limit=limit)
    )


@router.get("/v1/audit/anchors", response_model=AnchorsOut)
def list_anchors(caller: CallerDep, audit: AuditDep) -> AnchorsOut:
    """Every anchoring batch: range, root, status, transaction and gas."""
    return AnchorsOut(batches=[BatchOut.of(b) for b in audit.batches(actor_of(caller))])


@router.post(
    "/v1/audit/anchors",
    response_model=AnchorsOut,
    status_code=202,
    responses={200: {"model": AnchorsOut, "description": "Settled, or nothing to anchor"}},
)
def anchor_now(
    caller: CallerDep,
    audit: AuditDep,
    operations: OperationsDep,
    runtime: RuntimeDep,
    response: Response,
    wait: WaitQuery = False,
) -> AnchorsOut:
    """Anchor every entry not yet anchored, now (AUDITOR; the key's account signs): one
    transaction per batch. 202 with the queued batches, 200 once they are settled
    (`?wait=true`) or when there was nothing to anchor."""
    batches = audit.anchor(actor_of(caller))
    if wait and batches:
        batches = _settled(batches, runtime, operations, caller)
    settled = all(b.status != "pending" for b in batches)
    response.status_code = status.HTTP_200_OK if settled else status.HTTP_202_ACCEPTED
    return AnchorsOut(batches=[BatchOut.of(b) for b in batches])


def _settled(
    batches: list[BatchView], runtime: Runtime, operations: Any, caller: Caller
) -> list[BatchView]:
    for batch in batches:
        operations.wait(batch.operation_id, caller.org_id, runtime.settings.wait_timeout_seconds)
    runtime.anchorer.refresh()
    ids = {b.id for b in batches}
    return [b for b in runtime.anchorer.batches() if b.id in ids]


@router.get("/v1/audit/{seq}/proof", response_model=ProofOut, responses=problem_responses(409))
def entry_proof(
    seq: Annotated[int, Path(ge=1, le=2**63 - 1, description="The entry's sequence number")],
    caller: CallerDep,
    audit: AuditDep,
) -> ProofOut:
    """An entry (it holds no personal data), its leaf, its Merkle proof, the batch root and the
    anchoring transaction; 409 while the entry is not anchored yet."""
    return ProofOut.model_validate(audit.proof(actor_of(caller), seq))


@router.post(
    "/v1/audit/verify-proof", response_model=ProofCheckOut, responses=problem_responses(404)
)
def verify_proof(body: ProofIn, _caller: CallerDep, audit: AuditDep) -> ProofCheckOut:
    """Check an inclusion proof in Python and through the AuditAnchor contract's `verify` view;
    give the `leaf`, or the entry's `seq` and `entry_hash`."""
    return ProofCheckOut.model_validate(
        audit.verify_proof(
            batch_id=body.batch_id,
            proof=[_bytes(node) for node in body.proof],
            leaf=_bytes(body.leaf) if body.leaf else None,
            seq=body.seq,
            entry_hash=_bytes(body.entry_hash) if body.entry_hash else None,
            root=_bytes(body.root) if body.root else None,
        )
    )


@router.get(
    "/v1/customers/{customer_id}/timeline",
    response_model=TimelineOut,
    responses=problem_responses(410),
)
def customer_timeline(
    customer_id: Annotated[Bytes32Hex, Path(description="The customer's pseudonymous id")],
    caller: CallerDep,
    audit: AuditDep,
) -> TimelineOut:
    """The customer's on-chain events (registration, holders, commitment versions, wallet,
    consents, loyalty, erasure) and access-log entries, merged in time order, each with its
    proof: tx hash and block, or seq and anchoring batch (AUDITOR, DATA_STEWARD; no personal
    data)."""
    return TimelineOut.model_validate(audit.timeline(actor_of(caller), customer_id))
