"""Organisations of the consortium, and the proposals that add, suspend or reactivate them."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, ConfigDict, Field

from crm_gateway.api.deps import CallerDep
from crm_gateway.api.routers.operations import OperationOut, WriteDep
from crm_gateway.api.schemas import MAX_STORED_INT, EthAddress, OrgIdField, StrictModel
from crm_gateway.api.services import AccessDep
from crm_gateway.chain.jsonable import to_jsonable
from crm_gateway.services.access import ProposalKind

router = APIRouter(prefix="/v1/orgs", tags=["organisations"])

OrgId = Annotated[int, Path(ge=1, le=MAX_STORED_INT, description="Organisation id")]
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
    organization_id: OrgIdField


class ReactivateOrganization(StrictModel):
    kind: Literal["reactivate_organization"]
    organization_id: OrgIdField


class ChangeThreshold(StrictModel):
    kind: Literal["change_threshold"]
    threshold_bps: int = Field(
        ge=1, le=10_000, description="Approvals needed, in basis points of active organisations"
    )


class ProposalOut(BaseModel):
    """A proposal as the Consortium contract keeps it, with its approvals so far."""

    model_config = ConfigDict(populate_by_name=True)

    kind: int = Field(description="ProposalKind: 0 add, 1 suspend, 2 reactivate, 3 threshold")
    proposer_org: int = Field(alias="proposerOrg")
    created_at: int = Field(alias="createdAt")
    expires_at: int = Field(alias="expiresAt")
    executed: bool
    proposer: str
    data: str = Field(description="The ABI-encoded arguments, hex")
    approvals: int
    required_approvals: int = Field(alias="requiredApprovals")


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
    body: Annotated[ProposalIn, Body()], request: WriteDep, access: AccessDep
) -> OperationOut:
    """Propose a consortium change; your organisation's approval is counted at once.

    Needs an ORG_ADMIN key. The operation's result carries the `ProposalCreated` event.
    """
    payload = body.model_dump(mode="json")
    write = access.propose(request.caller.account, ProposalKind(body.kind), payload)
    return request.answer(write, payload)


@router.get("/proposals/{proposal_id}", response_model=ProposalOut)
def get_proposal(proposal_id: ProposalId, _caller: CallerDep, access: AccessDep) -> ProposalOut:
    """A proposal: kind, proposing organisation, expiry, approvals so far and approvals needed."""
    return ProposalOut.model_validate(to_jsonable(access.proposal(proposal_id)))


@router.post("/proposals/{proposal_id}/approvals", response_model=OperationOut, status_code=202)
def approve(proposal_id: ProposalId, request: WriteDep, access: AccessDep) -> OperationOut:
    """Approve a proposal on behalf of your organisation (one approval per organisation)."""
    write = access.approve(request.caller.account, proposal_id)
    return request.answer(write, {"proposal_id": proposal_id})


@router.post("/proposals/{proposal_id}/execution", response_model=OperationOut, status_code=202)
def execute(proposal_id: ProposalId, request: WriteDep, access: AccessDep) -> OperationOut:
    """Carry out a proposal that enough organisations approved."""
    write = access.execute(request.caller.account, proposal_id)
    return request.answer(write, {"proposal_id": proposal_id})
