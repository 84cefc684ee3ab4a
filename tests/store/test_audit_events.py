"""A customer's on-chain events for the timeline: by customer id, and by the wallets it had
(loyalty points), only while each wallet was the customer's; JSON queries on both backends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert

from crm_gateway.audit.events import CustomerEvents
from crm_gateway.store.models import ChainEvent

CUSTOMER = "0x" + "aa" * 32
OTHER = "0x" + "bb" * 32
W1 = "0x1111111111111111111111111111111111111111"
W2 = "0x2222222222222222222222222222222222222222"
MERCHANT = "0x3333333333333333333333333333333333333333"


def _event(block: int, contract: str, event: str, **args: Any) -> dict[str, Any]:
    return {
        "block_number": block,
        "block_hash": f"0x{block:064x}",
        "tx_hash": f"0x{block:062x}{len(args):02x}",
        "log_index": 0,
        "contract": contract,
        "event": event,
        "args": args,
        "block_timestamp": datetime(2025, 1, 1, tzinfo=UTC),
    }


def test_events_by_customer_id_and_by_the_wallets_it_had(engine: Engine) -> None:
    registry, ledger, points = "CustomerRegistry", "ConsentLedger", "LoyaltyPoints"
    rows = [
        _event(1, registry, "CustomerRegistered", customerId=CUSTOMER, orgId=1),
        _event(2, registry, "CustomerRegistered", customerId=OTHER, orgId=1),
        _event(3, points, "PointsEarned", orgId=1, to=W1, merchant=MERCHANT, amount=5),
        _event(4, registry, "WalletLinked", customerId=CUSTOMER, oldWallet=None, newWallet=W1),
        _event(5, ledger, "ConsentChanged", customerId=CUSTOMER, granted=True),
        _event(6, points, "PointsEarned", orgId=1, to=W1, merchant=MERCHANT, amount=10),
        _event(7, registry, "WalletLinked", customerId=CUSTOMER, oldWallet=W1, newWallet=W2),
        _event(8, points, "Transfer", **{"from": W1, "to": MERCHANT, "value": 1}),
        _event(9, points, "PointsRedeemed", orgId=1, **{"from": W2}, merchant=MERCHANT, amount=3),
        _event(10, registry, "CustomerErased", customerId=CUSTOMER),
        _event(11, points, "PointsEarned", orgId=1, to=W2, merchant=MERCHANT, amount=1),
    ]
    with engine.begin() as connection:
        connection.execute(insert(ChainEvent), rows)
    found = CustomerEvents(engine).of_customer(CUSTOMER.upper().replace("0X", "0x"))
    assert [(e.block_number, e.event) for e in found] == [
        (1, "CustomerRegistered"),
        (4, "WalletLinked"),
        (5, "ConsentChanged"),
        (7, "WalletLinked"),
        (10, "CustomerErased"),
        (6, "PointsEarned"),  # W1 while linked (blocks 4 to 7)
        (9, "PointsRedeemed"),  # W2 while linked (blocks 7 to 10)
    ]
    assert found[-1].args["from"] == W2
    assert CustomerEvents(engine).of_customer("0x" + "cc" * 32) == []
