"""Deploy the AuditAnchor: Merkle roots of the organisations' hash-chained access logs.

It is bound for good (an immutable) to the Consortium recorded by 0001, whose AUDITORs anchor
their organisation's log. Numbered 0005: 0004 is the loyalty token's.
"""

from crm_gateway.chain.migrations import MigrationContext, MigrationError


def apply(ctx: MigrationContext) -> None:
    consortium = ctx.record.address_of("Consortium")
    if consortium is None:
        raise MigrationError(f"{ctx.migration}: the Consortium (0001_consortium) is not deployed")
    ctx.deploy("AuditAnchor", consortium)
