"""Organisations of the consortium, and the proposals that add, suspend or reactivate them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Response
from pydantic import BaseModel, Field

from crm_gateway.api.deps import CallerDep, IdempotencyKeyDep
from crm_gateway.api.routers.operations import (
    OperationOut,
    WaitQuery,
    answer_write,
)
from crm_gateway.api.schemas import EthAddress, StrictModel
from crm_gateway.api.services import AccessDep, OperationsDep, RuntimeDep
from crm_gateway.chain.jsonable import to_jsonable
from crm_gateway.services.access import ProposalKind

router = APIRouter(prefix="/v1/orgs", tags=["organisations"])

OrgId = Annotated[int, Path(ge=1, le=2**64 - 1, description="Organisation id")]
ProposalId = Annotated[int, Path(ge=1, le=2**256 - 1, description="Proposal id")]


class OrganizationOut(BaseModel):
    id: int
    name: str
    admin: str
    active: bool
    members: list[str]


class AddOrganization(StrictModel):
    kind: Literal["add_organization"]
    name: str = Field(min_length=1, max_length=100)
    admin: EthAddress


class SuspendOrganization(StrictModel):
    kind: Literal["suspend_organization"]
    organization_id: int = Field(ge=1, le=2**64 - 1)


class ReactivateOrganization(StrictModel):
    kind: Literal["reactivate_organization"]
    organization_id: int = Field(ge=1, le=2**64 - 1)


class ChangeThreshold(StrictModel):
    kind: Literal["change_threshold"]
    threshold_bps: int = Field(
        ge=1, le=10_000, description="Approvals needed, in basis points of active organisations"
    )


ProposalIn = Annotated[
    AddOrganization | SuspendOrganization | ReactivateOrganization | ChangeThreshold,
    Field(discriminator="kind"),
]


@router.get("", response_model=list[OrganizationOut])
def list_organizations(_caller: CallerDep, access: AccessDep) -> list[OrganizationOut]:
    """Every organisation of the consortium, read from the chain."""
    return [OrganizationOut.model_validate(o, from_attributes=True) for o in access.organizations()]


@router.get("/{org_id}", response_model=OrganizationOut)
def get_organization(org_id: OrgId, _caller: CallerDep, access: AccessDep) -> OrganizationOut:
    """One organisation with its members."""
    return OrganizationOut.model_validate(access.organization(org_id), from_attributes=True)


@router.post("/proposals", response_model=OperationOut, status_code=202)
def propose(
    body: Annotated[ProposalIn, Body()],
    caller: CallerDep,
    idempotency_key: IdempotencyKeyDep,
    access: AccessDep,
    operations: OperationsDep,
    runtime: RuntimeDep,
    response: Response,
    wait: WaitQuery = False,
) -> OperationOut:
    """Propose a consortium change; your organisation's approval is counted at once.

    Needs an ORG_ADMIN key. The operation's result carries the `ProposalCreated` event.
    """
    payload = body.model_dump(mode="json")
    write = access.propose(caller.account, ProposalKind(body.kind), payload)
    return answer_write(
        write,
        caller=caller,
        idempotency_key=idempotency_key,
        payload=payload,
        wait=wait,
        response=response,
        operations=operations,
        runtime=runtime,
    )


@router.get("/proposals/{proposal_id}")
def get_proposal(proposal_id: ProposalId, _caller: CallerDep, access: AccessDep) -> dict[str, Any]:
    """A proposal: kind, proposing organisation, expiry, approvals so far and approvals needed."""
    return dict(to_jsonable(access.proposal(proposal_id)))


@router.post("/proposals/{proposal_id}/approvals", response_model=OperationOut, status_code=202)
def approve(
    proposal_id: ProposalId,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyDep,
    access: AccessDep,
    operations: OperationsDep,
    runtime: RuntimeDep,
    response: Response,
    wait: WaitQuery = False,
) -> OperationOut:
    """Approve a proposal on behalf of your organisation (one approval per organisation)."""
    return answer_write(
        access.approve(caller.account, proposal_id),
        caller=caller,
        idempotency_key=idempotency_key,
        payload={"proposal_id": proposal_id},
        wait=wait,
        response=response,
        operations=operations,
        runtime=runtime,
    )


@router.post("/proposals/{proposal_id}/execution", response_model=OperationOut, status_code=202)
def execute(
    proposal_id: ProposalId,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyDep,
    access: AccessDep,
    operations: OperationsDep,
    runtime: RuntimeDep,
    response: Response,
    wait: WaitQuery = False,
) -> OperationOut:
    """Carry out a proposal that enough organisations approved."""
    return answer_write(
        access.execute(caller.account, proposal_id),
        caller=caller,
        idempotency_key=idempotency_key,
        payload={"proposal_id": proposal_id},
        wait=wait,
        response=response,
        operations=operations,
        runtime=runtime,
    )
