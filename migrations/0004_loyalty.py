"""Deploy LoyaltyPoints: the coalition's points currency ("Coalition Points", PTS, whole points).

It is bound for good (immutables) to what 0001 and 0002 recorded: the Consortium, whose MERCHANTs
issue and redeem and whose CONSORTIUM_ADMIN pauses, and the CustomerRegistry, whose active
customers' wallets are the only ones that receive points. The transfer policy is fixed here too:
RegisteredOnly. Run again after an interruption, it deploys only what is missing.
"""

from crm_gateway.chain.migrations import MigrationContext, MigrationError

NAME = "Coalition Points"
SYMBOL = "PTS"
# A point is indivisible: balances and amounts are whole points everywhere (API, wallets, events).
DECIMALS = 0
# LoyaltyPoints.TransferPolicy: 0 RegisteredOnly, 1 Free, 2 NonTransferable.
REGISTERED_ONLY = 0


def apply(ctx: MigrationContext) -> None:
    consortium = ctx.record.address_of("Consortium")
    if consortium is None:
        raise MigrationError(f"{ctx.migration}: the Consortium (0001_consortium) is not deployed")
    customers = ctx.record.address_of("CustomerRegistry")
    if customers is None:
        raise MigrationError(
            f"{ctx.migration}: the CustomerRegistry (0002_customer_registry) is not deployed"
        )
    ctx.deploy("LoyaltyPoints", NAME, SYMBOL, DECIMALS, consortium, customers, REGISTERED_ONLY)
