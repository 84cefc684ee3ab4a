"""Deploy the consent contracts: the PurposeRegistry, then the ConsentLedger.

Both are bound for good (immutables) to what 0001 and 0002 recorded: the PurposeRegistry to the
Consortium, whose ORG_ADMINs define purposes; the ConsentLedger to the Consortium (its RELAYERs
submit signed changes), the CustomerRegistry (customer ids and their wallets) and the
PurposeRegistry deployed here, and with the setting SIGNATURE_TTL_SECONDS as its
`maxSignatureLifetime` (how far ahead a signed change's deadline may lie). Run again after an
interruption, it deploys only what is missing.
"""

from crm_gateway.chain.migrations import MigrationContext, MigrationError


def apply(ctx: MigrationContext) -> None:
    consortium = ctx.record.address_of("Consortium")
    if consortium is None:
        raise MigrationError(f"{ctx.migration}: the Consortium (0001_consortium) is not deployed")
    customers = ctx.record.address_of("CustomerRegistry")
    if customers is None:
        raise MigrationError(
            f"{ctx.migration}: the CustomerRegistry (0002_customer_registry) is not deployed"
        )
    purposes = ctx.deploy("PurposeRegistry", consortium)
    ctx.deploy("ConsentLedger", consortium, customers, purposes, ctx.settings.signature_ttl_seconds)
