"""A customer's on-chain events, from the indexer's `chain_events` (for the timeline).

Every event that names the customer id (`customerId`): registration, holders joining, commitment
versions, wallet links, consents, erasure; and the events of other contracts (the loyalty token)
that name one of the customer's wallets in an address argument, while it was linked to them.
No chain I/O: as current as the read model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, or_, select

from crm_gateway.store.models import ChainEvent

#: The contracts whose events name customers by id.
CUSTOMER_CONTRACTS = ("CustomerRegistry", "ConsentLedger")
#: Address arguments by which an event of another contract concerns a customer's wallet.
WALLET_ARGUMENTS = ("to", "from", "wallet", "owner", "account")

WalletPeriods = dict[str, list[tuple[int, int | None]]]


@dataclass(frozen=True)
class EventView:
    """One indexed contract event, with where it was mined."""

    contract: str
    event: str
    args: dict[str, Any]
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    block_timestamp: datetime


class CustomerEvents:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def of_customer(self, customer_id: str) -> list[EventView]:
        """Every event naming the customer id, then those naming one of its wallets, each list
        in chain order."""
        own = self._events(ChainEvent.args["customerId"].as_string() == customer_id.lower())
        return own + self.of_wallets(wallet_periods(own))

    def of_wallets(self, wallets: WalletPeriods) -> list[EventView]:
        """Events of contracts other than `CUSTOMER_CONTRACTS` that name one of `wallets` in an
        address argument within a block range in which it was the customer's."""
        if not wallets:
            return []
        addresses = sorted(wallets)
        found = []
        for event in self._events(
            or_(*(ChainEvent.args[name].as_string().in_(addresses) for name in WALLET_ARGUMENTS)),
            ChainEvent.contract.not_in(CUSTOMER_CONTRACTS),
        ):
            for name in WALLET_ARGUMENTS:
                periods = wallets.get(str(event.args.get(name)), [])
                if any(
                    start <= event.block_number and (end is None or event.block_number < end)
                    for start, end in periods
                ):
                    found.append(event)
                    break
        return found

    def _events(self, *conditions: ColumnElement[bool]) -> list[EventView]:
        columns = (
            ChainEvent.contract,
            ChainEvent.event,
            ChainEvent.args,
            ChainEvent.block_number,
            ChainEvent.block_hash,
            ChainEvent.tx_hash,
            ChainEvent.log_index,
            ChainEvent.block_timestamp,
        )
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(*columns)
                .where(*conditions)
                .order_by(ChainEvent.block_number, ChainEvent.log_index)
            ).all()
        return [EventView(**row._mapping) for row in rows]


def wallet_periods(events: list[EventView]) -> WalletPeriods:
    """The customer's wallets and the block ranges `[from, to)` in which each was linked."""
    periods: WalletPeriods = {}
    current: tuple[str, int] | None = None
    for event in events:
        if event.contract != "CustomerRegistry" or event.event not in {
            "WalletLinked",
            "WalletUnlinked",
            "CustomerErased",
        }:
            continue
        if current is not None:
            periods.setdefault(current[0], []).append((current[1], event.block_number))
        current = (
            (str(event.args["newWallet"]), event.block_number)
            if event.event == "WalletLinked"
            else None
        )
    if current is not None:
        periods.setdefault(current[0], []).append((current[1], None))
    return periods
