"""Deploy the CustomerRegistry: pseudonymous customer ids, per-holder commitments, wallets, erasure.

It is bound for good (an immutable) to the Consortium recorded by 0001, whose DATA_STEWARDs are
the only accounts that may write to it.
"""

from crm_gateway.chain.migrations import MigrationContext, MigrationError


def apply(ctx: MigrationContext) -> None:
    consortium = ctx.record.address_of("Consortium")
    if consortium is None:
        raise MigrationError(f"{ctx.migration}: the Consortium (0001_consortium) is not deployed")
    ctx.deploy("CustomerRegistry", consortium)
