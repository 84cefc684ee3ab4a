"""Organisations, members and role grants of the Consortium, so role checks need no chain call."""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from crm_gateway.indexer.events import IndexedEvent
from crm_gateway.indexer.projections.base import Projection, handles
from crm_gateway.store.models import RmMember, RmOrganization, RmRoleHolding

CONSORTIUM = "Consortium"


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
        active = session.scalar(
            select(RmOrganization.active).where(RmOrganization.org_id == org_id)
        )
        return bool(active)

    @handles(CONSORTIUM, "OrganizationAdded")
    def organization_added(self, session: Session, event: IndexedEvent) -> None:
        session.execute(
            insert(RmOrganization).values(
                org_id=int(event.args["orgId"]),
                name=event.args["name"],
                admin=event.args["admin"],
                active=True,
                updated_block=event.block_number,
            )
        )

    @handles(CONSORTIUM, "OrganizationSuspended", "OrganizationReactivated")
    def organization_state(self, session: Session, event: IndexedEvent) -> None:
        org_id = int(event.args["orgId"])
        active = event.event == "OrganizationReactivated"
        session.execute(
            update(RmOrganization)
            .where(RmOrganization.org_id == org_id)
            .values(active=active, updated_block=event.block_number)
        )
        session.execute(
            update(RmRoleHolding).where(RmRoleHolding.org_id == org_id).values(active=active)
        )

    @handles(CONSORTIUM, "MemberAdded")
    def member_added(self, session: Session, event: IndexedEvent) -> None:
        org_id = int(event.args["orgId"])
        account = event.args["account"]
        session.execute(
            insert(RmMember).values(account=account, org_id=org_id, joined_block=event.block_number)
        )
        session.execute(
            update(RmRoleHolding)
            .where(RmRoleHolding.account == account)
            .values(org_id=org_id, active=self._org_active(session, org_id))
        )

    @handles(CONSORTIUM, "MemberRemoved")
    def member_removed(self, session: Session, event: IndexedEvent) -> None:
        account = event.args["account"]
        session.execute(delete(RmMember).where(RmMember.account == account))
        session.execute(
            update(RmRoleHolding)
            .where(RmRoleHolding.account == account)
            .values(org_id=None, active=True)
        )

    @handles(CONSORTIUM, "RoleGranted")
    def role_granted(self, session: Session, event: IndexedEvent) -> None:
        account = event.args["account"]
        org_id = session.scalar(select(RmMember.org_id).where(RmMember.account == account))
        session.execute(
            insert(RmRoleHolding).values(
                account=account,
                role=str(event.args["role"]).lower(),
                org_id=org_id,
                active=self._org_active(session, org_id),
                granted_block=event.block_number,
            )
        )

    @handles(CONSORTIUM, "RoleRevoked")
    def role_revoked(self, session: Session, event: IndexedEvent) -> None:
        session.execute(
            delete(RmRoleHolding).where(
                RmRoleHolding.account == event.args["account"],
                RmRoleHolding.role == str(event.args["role"]).lower(),
            )
        )
