"""Who may read consent history, receipts and marketing audiences.

* Consent history and receipts: a DATA_STEWARD, AGENT or AUDITOR of an organisation, and only
  the changes that concern that organisation: those for a purpose it controls, or those naming
  it as the processor. Another organisation's consents (which purposes a customer agreed to
  with whom) are not its business; a receipt outside them is answered as not found.
* A marketing audience: a MARKETER, for its own organisation only.

The role is the one the account holds in force per the read model (as every role check of the
gateway), in the organisation the key belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from crm_gateway.services.access import Role
from crm_gateway.services.errors import PermissionDeniedError

HISTORY_ROLES: Final = (Role.DATA_STEWARD, Role.AGENT, Role.AUDITOR)
AUDIENCE_ROLES: Final = (Role.MARKETER,)


@dataclass(frozen=True, slots=True)
class ConsentReader:
    """Who asks: the API key's organisation and on-chain account."""

    org_id: int
    account: str


class RoleLookup(Protocol):
    def has_role(self, role: str | bytes, account: str) -> bool: ...

    def organization_of(self, account: str) -> int | None: ...


def authorise(roles: RoleLookup, reader: ConsentReader, allowed: tuple[Role, ...]) -> None:
    """Refuse unless the reader's account holds one of `allowed`, in force, in its own
    organisation."""
    names = ", ".join(role.value for role in allowed)
    if roles.organization_of(reader.account) != reader.org_id or not any(
        roles.has_role(role.value, reader.account) for role in allowed
    ):
        raise PermissionDeniedError(
            f"requires one of {names} in organisation {reader.org_id}",
            required_roles=[role.value for role in allowed],
        )


def concerns(reader: ConsentReader, processor_org: int, controller_org: int | None) -> bool:
    """Whether a consent for this processor and a purpose of this controller is the reader's
    organisation's business."""
    return reader.org_id in (processor_org, controller_org)


def authorise_audience(roles: RoleLookup, reader: ConsentReader, org_id: int) -> None:
    authorise(roles, reader, AUDIENCE_ROLES)
    if org_id != reader.org_id:
        raise PermissionDeniedError(
            f"a MARKETER of organisation {reader.org_id} may list the audience of organisation "
            f"{reader.org_id} only, not of {org_id}",
            required_roles=[role.value for role in AUDIENCE_ROLES],
        )
