"""Role grants within an organisation: who holds what, and granting or revoking."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from crm_gateway.api.deps import CallerDep
from crm_gateway.api.routers.audit import AuditDep, actor_of
from crm_gateway.api.routers.operations import OperationOut, WriteDep
from crm_gateway.api.schemas import MAX_STORED_INT, EthAddress, StrictModel
from crm_gateway.api.services import AccessDep
from crm_gateway.services.access import JoinSignature, Role
from crm_gateway.store.models import AccessAction

router = APIRouter(prefix="/v1/roles", tags=["roles"])


class RoleChange(StrictModel):
    role: Role
    account: EthAddress


class RoleGrant(RoleChange):
    """A grant. An account of no organisation joins yours only with its consent: the gateway
    signs it for an account it created; any other account signs `JoinOrganization` with its
    wallet and the signature comes here (or it sends `acceptMembership` itself first)."""

    deadline: int | None = Field(
        default=None, ge=0, le=2**256 - 1, description="The join signature's deadline"
    )
    signature: str | None = Field(
        default=None,
        pattern=r"^0x[0-9a-fA-F]{130}$",
        description="The account's EIP-712 JoinOrganization signature (65 bytes, hex)",
    )

    def join(self) -> JoinSignature | None:
        if self.signature is None or self.deadline is None:
            return None
        return JoinSignature(deadline=self.deadline, signature=self.signature)


class RoleHoldingOut(BaseModel):
    account: str
    role: Role
    organization_id: int
    active: bool


class AccountRolesOut(BaseModel):
    account: str
    organization_id: int
    roles: list[Role]


@router.get("", response_model=list[RoleHoldingOut])
def list_roles(
    _caller: CallerDep,
    access: AccessDep,
    org: Annotated[
        int | None, Query(ge=1, le=MAX_STORED_INT, description="Only this organisation")
    ] = None,
    role: Annotated[Role | None, Query(description="Only this role")] = None,
) -> list[RoleHoldingOut]:
    """Role holders, read from the chain."""
    return [
        RoleHoldingOut.model_validate(h, from_attributes=True) for h in access.holdings(org, role)
    ]


@router.get("/{account}", response_model=AccountRolesOut)
def account_roles(
    account: Annotated[EthAddress, Path(description="An account address")],
    _caller: CallerDep,
    access: AccessDep,
) -> AccountRolesOut:
    """The roles one account holds and the organisation it belongs to (0 for none)."""
    return AccountRolesOut(
        account=account,
        organization_id=access.organization_of(account),
        roles=access.roles_of(account),
    )


@router.post("/grants", response_model=OperationOut, status_code=202)
def grant_role(
    body: RoleGrant, request: WriteDep, access: AccessDep, audit: AuditDep
) -> OperationOut:
    """Grant a role to an account; it joins your organisation, with its consent (see
    `RoleGrant`). Needs an ORG_ADMIN key.

    The grant (or its refusal) is written to the access log."""
    write, off_chain = audit.role_change(
        actor_of(request.caller),
        AccessAction.ROLE_GRANT,
        body.role.value,
        body.account,
        lambda: access.grant(request.caller.account, body.role, body.account, join=body.join()),
    )
    return request.answer(
        write, body.model_dump(mode="json", include={"role", "account"}), off_chain=off_chain
    )


@router.post("/revocations", response_model=OperationOut, status_code=202)
def revoke_role(
    body: RoleChange, request: WriteDep, access: AccessDep, audit: AuditDep
) -> OperationOut:
    """Revoke a role from an account of your organisation. Needs an ORG_ADMIN key.

    The revocation (or its refusal) is written to the access log."""
    write, off_chain = audit.role_change(
        actor_of(request.caller),
        AccessAction.ROLE_REVOKE,
        body.role.value,
        body.account,
        lambda: access.revoke(request.caller.account, body.role, body.account),
    )
    return request.answer(write, body.model_dump(mode="json"), off_chain=off_chain)
