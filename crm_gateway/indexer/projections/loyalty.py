"""Balances and balance changes of LoyaltyPoints (issue 5's hot reads and settlement).

Every balance change of an ERC-20 is a `Transfer` log, so `Transfer` alone keeps the balances
(`rm_loyalty_balances`) equal to `balanceOf` and writes one `rm_loyalty_movements` row per change:
from the zero address it is an issue, to the zero address a redemption, else a transfer. The
token emits its own event right after the `Transfer` of the same call (PointsEarned after an earn's
mint, ActionRewarded after a reward's, PointsRedeemed after a redemption's burn); that event
completes the row with the merchant organisation, account and reason code or action hash, which is
what settlement sums. Handlers run in chain order inside the indexer's transaction, so the row is
always there when its completing event arrives.

A movement touches two wallets, so the projection has no single partition key: after a reorg it is
rebuilt in full from the stored events (one pass, Core statements).
"""

from __future__ import annotations

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from crm_gateway.indexer.events import IndexedEvent
from crm_gateway.indexer.projections.base import Projection, execute, handles, table
from crm_gateway.store.models import RmLoyaltyBalance, RmLoyaltyMovement

LOYALTY_POINTS = "LoyaltyPoints"
ZERO_ADDRESS = "0x" + "0" * 40

#: Movement kinds: earn (PointsEarned), reward (ActionRewarded), redeem (PointsRedeemed), transfer.
#: A mint or burn not (yet) completed by the token's own event stays `mint` or `burn`.
KINDS: tuple[str, ...] = ("earn", "reward", "redeem", "transfer", "mint", "burn")

_balances = table(RmLoyaltyBalance)
_movements = table(RmLoyaltyMovement)

_INSERT_MOVEMENT = insert(_movements)
_INSERT_BALANCE = insert(_balances)
_ADD_TO_BALANCE = (
    update(_balances)
    .where(_balances.c.wallet == bindparam("who"))
    .values(
        balance=_balances.c.balance + bindparam("delta"),
        updated_block=bindparam("block"),
    )
)
# The latest issue (or redemption) of this transaction before the completing event, not yet
# completed: the `Transfer` of the same call.
_OPEN_ISSUE = select(func.max(_movements.c.log_index)).where(
    _movements.c.tx_hash == bindparam("tx"),
    _movements.c.log_index < bindparam("before"),
    _movements.c.org_id.is_(None),
    _movements.c.from_wallet.is_(None),
    _movements.c.to_wallet == bindparam("wallet"),
)
_OPEN_REDEMPTION = select(func.max(_movements.c.log_index)).where(
    _movements.c.tx_hash == bindparam("tx"),
    _movements.c.log_index < bindparam("before"),
    _movements.c.org_id.is_(None),
    _movements.c.to_wallet.is_(None),
    _movements.c.from_wallet == bindparam("wallet"),
)
_COMPLETE = update(_movements).where(
    _movements.c.tx_hash == bindparam("tx"), _movements.c.log_index == bindparam("at")
)


class LoyaltyProjection(Projection):
    """`rm_loyalty_balances` and `rm_loyalty_movements` from LoyaltyPoints' events; see module."""

    name = "loyalty"
    tables = (RmLoyaltyMovement, RmLoyaltyBalance)

    @staticmethod
    def _add(session: Session, wallet: str, delta: int, block: int) -> None:
        changed = execute(session, _ADD_TO_BALANCE, {"who": wallet, "delta": delta, "block": block})
        if changed.rowcount == 0:
            execute(
                session,
                _INSERT_BALANCE,
                {"wallet": wallet, "balance": delta, "updated_block": block},
            )

    @handles(LOYALTY_POINTS, "Transfer")
    def transferred(self, session: Session, event: IndexedEvent) -> None:
        sender, receiver = str(event.args["from"]), str(event.args["to"])
        amount = int(event.args["value"])
        issued, redeemed = sender == ZERO_ADDRESS, receiver == ZERO_ADDRESS
        execute(
            session,
            _INSERT_MOVEMENT,
            {
                "tx_hash": event.tx_hash,
                "log_index": event.log_index,
                "block_number": event.block_number,
                "moved_at": event.block_timestamp,
                "day": event.block_timestamp.date(),
                "kind": "mint" if issued else "burn" if redeemed else "transfer",
                "org_id": None,
                "merchant": None,
                "amount": amount,
                "from_wallet": None if issued else sender,
                "to_wallet": None if redeemed else receiver,
                "reason": None,
            },
        )
        if not issued:
            self._add(session, sender, -amount, event.block_number)
        if not redeemed:
            self._add(session, receiver, amount, event.block_number)

    def _complete(
        self, session: Session, event: IndexedEvent, kind: str, wallet: str, reason: str
    ) -> None:
        finder = _OPEN_REDEMPTION if kind == "redeem" else _OPEN_ISSUE
        at = execute(
            session, finder, {"tx": event.tx_hash, "before": event.log_index, "wallet": wallet}
        ).scalar()
        if at is None:  # cannot happen with this token: its event follows its own Transfer
            return
        execute(
            session,
            _COMPLETE,
            {
                "tx": event.tx_hash,
                "at": at,
                "kind": kind,
                "org_id": int(event.args["orgId"]),
                "merchant": event.args["merchant"],
                "reason": str(reason).lower(),
            },
        )

    @handles(LOYALTY_POINTS, "PointsEarned")
    def earned(self, session: Session, event: IndexedEvent) -> None:
        self._complete(session, event, "earn", event.args["to"], event.args["reason"])

    @handles(LOYALTY_POINTS, "ActionRewarded")
    def rewarded(self, session: Session, event: IndexedEvent) -> None:
        self._complete(session, event, "reward", event.args["to"], event.args["actionHash"])

    @handles(LOYALTY_POINTS, "PointsRedeemed")
    def redeemed(self, session: Session, event: IndexedEvent) -> None:
        self._complete(session, event, "redeem", event.args["from"], event.args["reason"])


__all__ = ["KINDS", "LOYALTY_POINTS", "ZERO_ADDRESS", "LoyaltyProjection"]
