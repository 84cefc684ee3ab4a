"""Deploy the Consortium contract: organisations, roles, multi-organisation approval, permissioning.

The deployer becomes CONSORTIUM_ADMIN and the admin of the founding organisation, whose name comes
from FOUNDER_ORG_NAME.
"""

from crm_gateway.chain.migrations import MigrationContext


def apply(ctx: MigrationContext) -> None:
    settings = ctx.settings
    ctx.deploy(
        "Consortium",
        settings.founder_org_name,
        ctx.deployer.address,
        settings.approval_threshold_bps,
        settings.proposal_lifetime_seconds,
    )
