"""Organisations and roles of the consortium: reads from the Consortium contract, and the chain
writes that change them (role grants, proposals, approvals), checked before they are queued."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from eth_typing import ABIComponent, ABIFunction
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3.contract import Contract

from crm_gateway.chain.contracts import Contracts
from crm_gateway.pipeline.outbox import ChainWrite
from crm_gateway.services.errors import ChainRefusedError, NotFoundError, PermissionDeniedError

CONSORTIUM = "Consortium"


class Role(StrEnum):
    CONSORTIUM_ADMIN = "CONSORTIUM_ADMIN"
    ORG_ADMIN = "ORG_ADMIN"
    DATA_STEWARD = "DATA_STEWARD"
    AGENT = "AGENT"
    MARKETER = "MARKETER"
    AUDITOR = "AUDITOR"
    MERCHANT = "MERCHANT"
    RELAYER = "RELAYER"

    @property
    def role_id(self) -> bytes:
        return keccak(text=self.value)


class ProposalKind(StrEnum):
    ADD_ORGANIZATION = "add_organization"
    SUSPEND_ORGANIZATION = "suspend_organization"
    REACTIVATE_ORGANIZATION = "reactivate_organization"
    CHANGE_THRESHOLD = "change_threshold"


@dataclass(frozen=True)
class Organization:
    id: int
    name: str
    admin: str
    active: bool
    members: list[str]


@dataclass(frozen=True)
class RoleHolding:
    account: str
    role: Role
    organization_id: int
    active: bool


class AccessService:
    def __init__(self, contracts: Contracts) -> None:
        self._contracts = contracts

    @property
    def _consortium(self) -> Contract:
        return self._contracts[CONSORTIUM]

    # --- reads ----------------------------------------------------------------------------

    def organizations(self) -> list[Organization]:
        count = int(self._consortium.functions.organizationCount().call())
        return [self.organization(org_id) for org_id in range(1, count + 1)]

    def organization(self, org_id: int) -> Organization:
        functions = self._consortium.functions
        if not 1 <= org_id <= int(functions.organizationCount().call()):
            raise NotFoundError(f"organisation {org_id} does not exist")
        record = functions.organization(org_id).call()
        members: list[str] = [to_checksum_address(a) for a in functions.membersOf(org_id).call()]
        return Organization(
            id=int(record[0]),
            name=record[1],
            admin=record[2],
            active=bool(record[3]),
            members=members,
        )

    def organization_of(self, account: str) -> int:
        return int(self._consortium.functions.organizationOf(to_checksum_address(account)).call())

    def has_role(self, role: Role, account: str) -> bool:
        """Whether `account` holds `role` and its organisation is active."""
        return bool(
            self._consortium.functions.hasActiveRole(
                role.role_id, to_checksum_address(account)
            ).call()
        )

    def roles_of(self, account: str) -> list[Role]:
        checksum = to_checksum_address(account)
        functions = self._consortium.functions
        return [role for role in Role if functions.hasRole(role.role_id, checksum).call()]

    def holdings(self, org_id: int | None = None, role: Role | None = None) -> list[RoleHolding]:
        functions = self._consortium.functions
        active = {o.id: o.active for o in self.organizations()}
        result = []
        for current in [role] if role else list(Role):
            for account in functions.getRoleMembers(current.role_id).call():
                member_org = int(functions.organizationOf(account).call())
                if org_id is None or member_org == org_id:
                    result.append(
                        RoleHolding(
                            account=to_checksum_address(account),
                            role=current,
                            organization_id=member_org,
                            active=active.get(member_org, False),
                        )
                    )
        return result

    def required_approvals(self) -> int:
        return int(self._consortium.functions.requiredApprovals().call())

    def proposal(self, proposal_id: int) -> dict[str, Any]:
        functions = self._consortium.functions
        if not 1 <= proposal_id <= int(functions.proposalCount().call()):
            raise NotFoundError(f"proposal {proposal_id} does not exist")
        raw = functions.proposal(proposal_id).call()
        names = [o["name"] for o in _outputs(self._consortium, "proposal")]
        fields = dict(zip(names, raw, strict=True))
        fields["approvals"] = int(functions.approvalCount(proposal_id).call())
        fields["requiredApprovals"] = self.required_approvals()
        return fields

    # --- writes ---------------------------------------------------------------------------

    def require_org_admin(self, account: str) -> None:
        if not self.has_role(Role.ORG_ADMIN, account):
            raise PermissionDeniedError(
                f"account {account} is not an ORG_ADMIN of an active organisation",
                required_role=Role.ORG_ADMIN.value,
            )

    def grant(self, actor: str, role: Role, account: str) -> ChainWrite:
        return self._role_change("roles.grant", "grantRole", actor, role, account)

    def revoke(self, actor: str, role: Role, account: str) -> ChainWrite:
        return self._role_change("roles.revoke", "revokeRole", actor, role, account)

    def _role_change(
        self, kind: str, function: str, actor: str, role: Role, account: str
    ) -> ChainWrite:
        self.require_org_admin(actor)
        if role is Role.CONSORTIUM_ADMIN:
            raise ChainRefusedError(
                "CONSORTIUM_ADMIN cannot be granted or revoked by an organisation admin",
                error={"name": "RoleNotDelegable", "args": {"role": "0x" + role.role_id.hex()}},
            )
        actor_org = self.organization_of(actor)
        account_org = self.organization_of(account)
        if account_org not in (0, actor_org):
            raise ChainRefusedError(
                f"account {account} belongs to organisation {account_org}, not yours",
                error={
                    "name": "AccountInOtherOrganization",
                    "args": {"account": account, "orgId": account_org},
                },
            )
        return ChainWrite(
            kind=kind,
            contract=CONSORTIUM,
            function=function,
            args=["0x" + role.role_id.hex(), to_checksum_address(account)],
            sender=to_checksum_address(actor),
        )

    def propose(self, actor: str, kind: ProposalKind, arguments: dict[str, Any]) -> ChainWrite:
        self.require_org_admin(actor)
        builders: dict[ProposalKind, Callable[[], tuple[str, list[Any]]]] = {
            ProposalKind.ADD_ORGANIZATION: lambda: (
                "proposeAddOrganization",
                [arguments["name"], to_checksum_address(arguments["admin"])],
            ),
            ProposalKind.SUSPEND_ORGANIZATION: lambda: (
                "proposeSuspendOrganization",
                [int(arguments["organization_id"])],
            ),
            ProposalKind.REACTIVATE_ORGANIZATION: lambda: (
                "proposeReactivateOrganization",
                [int(arguments["organization_id"])],
            ),
            ProposalKind.CHANGE_THRESHOLD: lambda: (
                "proposeThresholdChange",
                [int(arguments["threshold_bps"])],
            ),
        }
        function, args = builders[kind]()
        return ChainWrite(
            kind=f"orgs.propose.{kind.value}",
            contract=CONSORTIUM,
            function=function,
            args=args,
            sender=to_checksum_address(actor),
        )

    def approve(self, actor: str, proposal_id: int) -> ChainWrite:
        self.require_org_admin(actor)
        self.proposal(proposal_id)
        return ChainWrite(
            "orgs.approve", CONSORTIUM, "approve", [proposal_id], to_checksum_address(actor)
        )

    def execute(self, actor: str, proposal_id: int) -> ChainWrite:
        self.require_org_admin(actor)
        self.proposal(proposal_id)
        return ChainWrite(
            "orgs.execute", CONSORTIUM, "execute", [proposal_id], to_checksum_address(actor)
        )


def _outputs(contract: Contract, function: str) -> Sequence[ABIComponent]:
    for item in contract.abi:
        if item.get("type") == "function" and item.get("name") == function:
            abi = cast(ABIFunction, item)
            return abi["outputs"][0].get("components") or abi["outputs"]
    raise LookupError(function)
