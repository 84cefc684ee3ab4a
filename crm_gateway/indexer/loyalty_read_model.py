"""Loyalty points from the read model: balances (now or at a block), histories, settlement.

Answered from `rm_loyalty_balances` and `rm_loyalty_movements` (see `projections/loyalty.py`) with
no chain I/O, each with the block the read model is current to (`as_of_block`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from eth_utils.address import to_checksum_address
from sqlalchemy import Connection, Engine, func, or_, select

from crm_gateway.indexer.scanner import CURSOR_NAME
from crm_gateway.store.models import IndexerCursor, RmLoyaltyBalance, RmLoyaltyMovement

#: Movement kinds that issue points (counted as the organisation's `issued`) and that redeem them.
ISSUING_KINDS: tuple[str, ...] = ("earn", "reward")
REDEEMING_KINDS: tuple[str, ...] = ("redeem",)


@dataclass(frozen=True)
class LoyaltyBalanceView:
    """A wallet's balance at `block` (the read model's cursor unless a block was asked for)."""

    wallet: str
    balance: int
    block: int | None
    as_of_block: int | None  # the read model's cursor when the question was answered
    updated_block: int | None  # the block of the wallet's last balance change up to `block`


@dataclass(frozen=True)
class LoyaltyMovementView:
    """One balance change: earn, reward, redeem or transfer (mint/burn if never completed)."""

    tx_hash: str
    log_index: int
    block_number: int
    moved_at: datetime
    kind: str
    org_id: int | None
    merchant: str | None
    amount: int
    from_wallet: str | None
    to_wallet: str | None
    reason: str | None  # the reason code (earn, redeem) or the action hash (reward)


@dataclass(frozen=True)
class SettlementDay:
    """What one merchant organisation issued and redeemed on one UTC day."""

    org_id: int
    day: date
    issued: int
    redeemed: int


@dataclass(frozen=True)
class SettlementRows:
    days: list[SettlementDay]
    as_of_block: int | None


def _as_of(connection: Connection) -> int | None:
    return connection.execute(
        select(IndexerCursor.block_number).where(IndexerCursor.name == CURSOR_NAME)
    ).scalar_one_or_none()


class LoyaltyQueries:
    """The loyalty queries of the read model; needs only an `engine`."""

    engine: Engine

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def balance(self, wallet: str, *, at_block: int | None = None) -> LoyaltyBalanceView:
        """`balanceOf(wallet)` as of the read model's cursor, or at the end of block `at_block`
        (from the movements up to it; a block beyond the cursor is answered as far as known:
        compare `block` with `as_of_block`)."""
        holder = to_checksum_address(wallet)
        with self.engine.connect() as connection:
            as_of = _as_of(connection)
            if at_block is None:
                row = connection.execute(
                    select(RmLoyaltyBalance.balance, RmLoyaltyBalance.updated_block).where(
                        RmLoyaltyBalance.wallet == holder
                    )
                ).one_or_none()
                return LoyaltyBalanceView(
                    holder,
                    0 if row is None else int(row.balance),
                    as_of,
                    as_of,
                    None if row is None else int(row.updated_block),
                )
            movements = RmLoyaltyMovement
            up_to = movements.block_number <= at_block
            received = connection.execute(
                select(
                    func.coalesce(func.sum(movements.amount), 0), func.max(movements.block_number)
                ).where(movements.to_wallet == holder, up_to)
            ).one()
            sent = connection.execute(
                select(
                    func.coalesce(func.sum(movements.amount), 0), func.max(movements.block_number)
                ).where(movements.from_wallet == holder, up_to)
            ).one()
        blocks = [int(b) for b in (received[1], sent[1]) if b is not None]
        return LoyaltyBalanceView(
            holder,
            int(received[0]) - int(sent[0]),
            at_block,
            as_of,
            max(blocks) if blocks else None,
        )

    def movements(
        self,
        wallet: str,
        *,
        from_block: int = 0,
        limit: int = 1000,
    ) -> list[LoyaltyMovementView]:
        """The balance changes of `wallet` from `from_block` on, oldest first, at most `limit`."""
        holder = to_checksum_address(wallet)
        m = RmLoyaltyMovement
        query = (
            select(
                m.tx_hash,
                m.log_index,
                m.block_number,
                m.moved_at,
                m.kind,
                m.org_id,
                m.merchant,
                m.amount,
                m.from_wallet,
                m.to_wallet,
                m.reason,
            )
            .where(or_(m.from_wallet == holder, m.to_wallet == holder))
            .where(m.block_number >= from_block)
            .order_by(m.block_number, m.log_index)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [LoyaltyMovementView(**row._mapping) for row in rows]

    def settlement(
        self, from_time: datetime | None = None, to_time: datetime | None = None
    ) -> SettlementRows:
        """Per merchant organisation and UTC day: points issued (earn, reward) and redeemed, for
        the movements whose block time is in `[from_time, to_time)` (either end open if None)."""
        m = RmLoyaltyMovement
        kinds: Sequence[str] = ISSUING_KINDS + REDEEMING_KINDS
        query = (
            select(m.org_id, m.day, m.kind, func.sum(m.amount).label("total"))
            .where(m.org_id.is_not(None), m.kind.in_(kinds))
            .group_by(m.org_id, m.day, m.kind)
        )
        if from_time is not None:
            query = query.where(m.moved_at >= from_time)
        if to_time is not None:
            query = query.where(m.moved_at < to_time)
        with self.engine.connect() as connection:
            as_of = _as_of(connection)
            rows = connection.execute(query).all()
        totals: dict[tuple[int, date], list[int]] = {}
        for row in rows:
            pair = totals.setdefault((int(row.org_id), row.day), [0, 0])
            pair[0 if row.kind in ISSUING_KINDS else 1] += int(row.total)
        days = [
            SettlementDay(org_id, day, issued, redeemed)
            for (org_id, day), (issued, redeemed) in sorted(totals.items())
        ]
        return SettlementRows(days, as_of)


__all__ = [
    "ISSUING_KINDS",
    "REDEEMING_KINDS",
    "LoyaltyBalanceView",
    "LoyaltyMovementView",
    "LoyaltyQueries",
    "SettlementDay",
    "SettlementRows",
]
