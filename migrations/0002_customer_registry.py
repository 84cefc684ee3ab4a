"""Deploy the CustomerRegistry: pseudonymous customer ids, per-holder commitments, wallets, erasure.

It is bound for good (an immutable) to the Consortium recorded by 0001, whose DATA_STEWARDs are
the only accounts that may write to it, with the wallet-recovery delay of the setting
WALLET_RECOVERY_DELAY_SECONDS (an immutable too: changing it means a new registry).
"""

from crm_gateway.chain.migrations import MigrationContext, MigrationError


def apply(ctx: MigrationContext) -> None:
    consortium = ctx.record.address_of("Consortium")
    if consortium is None:
        raise MigrationError(f"{ctx.migration}: the Consortium (0001_consortium) is not deployed")
    ctx.deploy("CustomerRegistry", consortium, ctx.settings.wallet_recovery_delay_seconds)
