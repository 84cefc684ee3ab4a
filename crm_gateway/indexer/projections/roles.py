"""Organisations, members and role grants of the Consortium, so role checks need no chain call."""

from __future__ import annotations

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from crm_gateway.indexer.events import IndexedEvent
from crm_gateway.indexer.projections.base import Projection, execute, handles, table
from crm_gateway.store.models import RmMember, RmOrganization, RmRoleHolding

CONSORTIUM = "Consortium"

_orgs = table(RmOrganization)
_members = table(RmMember)
_holdings = table(RmRoleHolding)

_INSERT_ORG = insert(_orgs)
_INSERT_MEMBER = insert(_members)
_INSERT_HOLDING = insert(_holdings)
_ORG_ACTIVE = select(_orgs.c.active).where(_orgs.c.org_id == bindparam("org"))
_MEMBER_ORG = select(_members.c.org_id).where(_members.c.account == bindparam("who"))
_SET_ORG_STATE = update(_orgs).where(_orgs.c.org_id == bindparam("org"))
_SET_ORG_HOLDINGS = update(_holdings).where(_holdings.c.org_id == bindparam("org"))
_SET_ACCOUNT_HOLDINGS = update(_holdings).where(_holdings.c.account == bindparam("who"))
_DELETE_MEMBER = delete(_members).where(_members.c.account == bindparam("who"))
_DELETE_HOLDING = delete(_holdings).where(
    _holdings.c.account == bindparam("who"), _holdings.c.role == bindparam("what")
)


class RolesProjection(Projection):
    """`rm_organizations`, `rm_members` and `rm_role_holdings` from the Consortium's events.

    Mirrors `OrganizationRoles`: a holding's `org_id` is the account's current organisation (it
    follows MemberAdded/MemberRemoved, which the contract emits before the first RoleGranted and
    after the last RoleRevoked), and `active` is what `hasActiveRole` answers: the account belongs
    to no organisation or to an active one. Suspending an organisation keeps its grants but makes
    them inactive; reactivating it restores them. The tables are small, so a rebuild replays all
    Consortium events (no keys).
    """

    name = "roles"
    tables = (RmRoleHolding, RmMember, RmOrganization)

    @staticmethod
    def _org_active(session: Session, org_id: int | None) -> bool:
        if org_id is None:
            return True
        return bool(execute(session, _ORG_ACTIVE, {"org": org_id}).scalar())

    @handles(CONSORTIUM, "OrganizationAdded")
    def organization_added(self, session: Session, event: IndexedEvent) -> None:
        execute(
            session,
            _INSERT_ORG,
            {
                "org_id": int(event.args["orgId"]),
                "name": event.args["name"],
                "admin": event.args["admin"],
                "active": True,
                "updated_block": event.block_number,
            },
        )

    @handles(CONSORTIUM, "OrganizationSuspended", "OrganizationReactivated")
    def organization_state(self, session: Session, event: IndexedEvent) -> None:
        org_id = int(event.args["orgId"])
        active = event.event == "OrganizationReactivated"
        execute(
            session,
            _SET_ORG_STATE,
            {"org": org_id, "active": active, "updated_block": event.block_number},
        )
        execute(session, _SET_ORG_HOLDINGS, {"org": org_id, "active": active})

    @handles(CONSORTIUM, "MemberAdded")
    def member_added(self, session: Session, event: IndexedEvent) -> None:
        org_id = int(event.args["orgId"])
        account = event.args["account"]
        execute(
            session,
            _INSERT_MEMBER,
            {"account": account, "org_id": org_id, "joined_block": event.block_number},
        )
        execute(
            session,
            _SET_ACCOUNT_HOLDINGS,
            {"who": account, "org_id": org_id, "active": self._org_active(session, org_id)},
        )

    @handles(CONSORTIUM, "MemberRemoved")
    def member_removed(self, session: Session, event: IndexedEvent) -> None:
        account = event.args["account"]
        execute(session, _DELETE_MEMBER, {"who": account})
        execute(session, _SET_ACCOUNT_HOLDINGS, {"who": account, "org_id": None, "active": True})

    @handles(CONSORTIUM, "RoleGranted")
    def role_granted(self, session: Session, event: IndexedEvent) -> None:
        account = event.args["account"]
        org_id = execute(session, _MEMBER_ORG, {"who": account}).scalar()
        execute(
            session,
            _INSERT_HOLDING,
            {
                "account": account,
                "role": str(event.args["role"]).lower(),
                "org_id": org_id,
                "active": self._org_active(session, org_id),
                "granted_block": event.block_number,
            },
        )

    @handles(CONSORTIUM, "RoleRevoked")
    def role_revoked(self, session: Session, event: IndexedEvent) -> None:
        execute(
            session,
            _DELETE_HOLDING,
            {"who": event.args["account"], "what": str(event.args["role"]).lower()},
        )
