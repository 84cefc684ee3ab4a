"""Organisations and roles of the consortium: reads from the Consortium contract, and the chain
writes that change them (role grants, proposals, approvals), checked before they are queued.

An account joins an organisation only with its own consent (OrganizationRoles): a grant to an
account of no organisation goes as `grantRoleBySig` with the account's `JoinOrganization`
signature, made here with the keystore key when the gateway created the account, or given by the
account's own wallet (`JoinSignature`); or as a plain `grantRole` when the account agreed by its own
transaction (`acceptMembership`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from eth_typing import ABIComponent, ABIFunction
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3.contract import Contract

from crm_gateway.chain.contracts import Contracts
from crm_gateway.chain.keystore import Keystore
from crm_gateway.chain.membership import join_organization_typed_data, sign_join
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


@dataclass(frozen=True)
class JoinSignature:
    """An account's own EIP-712 `JoinOrganization` signature, made with its wallet."""

    deadline: int
    signature: str


#: How long a join signature the gateway makes stays valid (the outbox sends it well before).
JOIN_SIGNATURE_TTL_SECONDS = 3600


class AccessService:
    def __init__(
        self,
        contracts: Contracts,
        *,
        keystore: Keystore | None = None,
        join_ttl_seconds: int = JOIN_SIGNATURE_TTL_SECONDS,
    ) -> None:
        self._contracts = contracts
        # The keys of the accounts this gateway created: it signs their consent to join.
        self._keystore = keystore
        self._join_ttl = join_ttl_seconds

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

    def grant(
        self, actor: str, role: Role, account: str, *, join: JoinSignature | None = None
    ) -> ChainWrite:
        """Grant `role` to `account`. An account of no organisation must consent to join the
        actor's: `join` (its wallet's signature), else the keystore key of an account this
        gateway created signs, else its own `acceptMembership` transaction must be on-chain."""
        write = self._role_change("roles.grant", "grantRole", actor, role, account)
        account = to_checksum_address(account)
        functions = self._consortium.functions
        if self.organization_of(account) != 0:
            return write
        org_id = self.organization_of(actor)
        if join is None:
            if int(functions.membershipAcceptance(account).call()) == org_id:
                return write
            join = self._sign_join(account, org_id, role)
        if join is None:
            raise ChainRefusedError(
                f"account {account} belongs to no organisation and has not agreed to join "
                f"organisation {org_id}: it must sign JoinOrganization (or send "
                "acceptMembership itself), and this gateway does not hold its key",
                error={
                    "name": "MembershipNotAccepted",
                    "args": {"account": account, "orgId": org_id},
                },
            )
        return ChainWrite(
            kind="roles.grant",
            contract=CONSORTIUM,
            function="grantRoleBySig",
            args=["0x" + role.role_id.hex(), account, join.deadline, join.signature],
            sender=write.sender,
        )

    def join_typed_data(
        self, account: str, org_id: int, role: Role, deadline: int
    ) -> dict[str, Any]:
        """The `JoinOrganization` typed data `account` signs to join `org_id` with `role`."""
        consortium = self._consortium
        return join_organization_typed_data(
            chain_id=int(self._contracts.chain.w3.eth.chain_id),
            consortium=consortium.address,
            account=account,
            org_id=org_id,
            role=role.role_id,
            nonce=int(consortium.functions.membershipNonces(account).call()),
            deadline=deadline,
        )

    def _sign_join(self, account: str, org_id: int, role: Role) -> JoinSignature | None:
        """The join signature of an account whose key is in this gateway's keystore, else None."""
        if self._keystore is None or account not in self._keystore.addresses():
            return None
        key = self._keystore.unlock(account)
        deadline = int(time.time()) + self._join_ttl
        typed = self.join_typed_data(account, org_id, role, deadline)
        return JoinSignature(deadline=deadline, signature=sign_join(key, typed))

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
