"""Constraints, JSON and timestamps of the outbox and chain transaction tables, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.store.db import session_scope
from crm_gateway.store.models import (
    ApiKey,
    ChainTransaction,
    ChainTransactionStatus,
    Operation,
    OperationStatus,
)

SENDER = "0x52908400098527886E0F7030069857D2E4169EE7"
ACCOUNT = "0x8617E340B3D01FA5F11F306F4090FD50E238070D"


def _api_key(session: Session, prefix: str = "crm_AAAAAAAA") -> ApiKey:
    key = ApiKey(prefix=prefix, key_hash="ab" * 32, org_id=1, account=ACCOUNT, role="operator")
    session.add(key)
    session.flush()
    return key


def _operation(api_key_id: str | None, idempotency_key: str | None, **kw: Any) -> Operation:
    values: dict[str, Any] = {
        "api_key_id": api_key_id,
        "idempotency_key": idempotency_key,
        "request_hash": "cd" * 32,
        "kind": "roles.grant",
        "contract": "AccessHub",
        "function": "grantRole",
        "args": ["0x" + "00" * 32, ACCOUNT],
        "sender": SENDER,
    }
    values.update(kw)
    return Operation(**values)


def _chain_tx(nonce: int, tx_hash: str | None = None, sender: str = SENDER) -> ChainTransaction:
    return ChainTransaction(
        sender=sender,
        nonce=nonce,
        tx_hash=tx_hash or "0x" + f"{nonce:064x}",
        raw_tx=b"\x02\xf8" + bytes(range(256)),
        gas_limit=100_000,
    )


def test_operation_defaults(session: Session) -> None:
    key = _api_key(session)
    op = _operation(key.id, "k1")
    session.add(op)
    session.commit()
    assert len(op.id) == 36
    assert op.status is OperationStatus.PENDING
    assert op.seq >= 1
    assert op.created_at.tzinfo is UTC
    assert op.api_key is key


def test_idempotency_key_is_unique_per_api_key(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        first = _api_key(session, "crm_11111111").id
        second = _api_key(session, "crm_22222222").id
        session.add(_operation(first, "same"))
        session.add(_operation(second, "same"))  # another key may use the same value
        session.add(_operation(first, None))
        session.add(_operation(first, None))  # no idempotency key: no constraint
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        session.add(_operation(first, "same"))


def test_idempotency_key_is_unique_for_internal_operations(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as session:
        session.add(_operation(None, "cli-1"))
        session.add(_operation(None, None))
        session.add(_operation(None, None))
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        session.add(_operation(None, "cli-1"))


def test_sender_nonce_is_unique(session_factory: sessionmaker[Session]) -> None:
    other = "0x" + "22" * 20
    with session_scope(session_factory) as session:
        session.add(_chain_tx(0))
        session.add(_chain_tx(1))
        session.add(_chain_tx(0, tx_hash="0x" + "ee" * 32, sender=other))
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        session.add(_chain_tx(1, tx_hash="0x" + "ff" * 32))
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        session.add(_chain_tx(7, tx_hash="0x" + f"{1:064x}"))  # tx_hash taken by nonce 1


def test_foreign_keys_are_enforced(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        session.add(_operation(None, None, chain_tx_id=987_654))
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        session.add(_operation("no-such-key", None))


def test_status_values_are_checked(session_factory: sessionmaker[Session], engine: Engine) -> None:
    with pytest.raises(StatementError), session_scope(session_factory) as session:
        session.add(_operation(None, None, status="bogus"))
    with session_scope(session_factory) as session:
        session.add(_operation(None, None))
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text("UPDATE operations SET status = 'bogus'"))


JSON_ARGS: list[Any] = [
    2**256 - 1,
    -(2**255),
    "0x" + "ab" * 32,
    True,
    None,
    1.5,
    "Zoë ✓ 𝄞",
    [1, [2, {"k": "v"}]],
    {"nested": {"list": [], "empty": {}}},
]


def test_json_columns_round_trip(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        op = _operation(
            None,
            None,
            args=JSON_ARGS,
            status=OperationStatus.FAILED,
            error_name="AccessControlUnauthorizedAccount",
            error_args={"account": ACCOUNT, "neededRole": "0x" + "12" * 32},
        )
        session.add(op)
        session.flush()
        op_id = op.id
    with session_scope(session_factory) as session:
        loaded = session.scalars(select(Operation).where(Operation.id == op_id)).one()
        assert loaded.args == JSON_ARGS
        assert isinstance(loaded.args[0], int)
        assert loaded.error_args == {"account": ACCOUNT, "neededRole": "0x" + "12" * 32}
        assert loaded.result is None
        assert loaded.status is OperationStatus.FAILED
        # None is SQL NULL, not the JSON literal null.
        null_result = session.scalars(
            select(Operation.id).where(Operation.result.is_(None), Operation.id == op_id)
        ).all()
        assert null_result == [op_id]
        loaded.result = {"tx_hash": "0x" + "01" * 32, "events": [{"name": "RoleGranted"}]}
    with session_scope(session_factory) as session:
        loaded = session.scalars(select(Operation).where(Operation.id == op_id)).one()
        assert loaded.result == {"tx_hash": "0x" + "01" * 32, "events": [{"name": "RoleGranted"}]}


def test_timestamps_are_aware_utc(session_factory: sessionmaker[Session]) -> None:
    plus_two = timezone(timedelta(hours=2))
    mined = datetime(2030, 1, 2, 3, 4, 5, 678_901, tzinfo=plus_two)
    with session_scope(session_factory) as session:
        tx = _chain_tx(5)
        tx.mined_at = mined
        tx.status = ChainTransactionStatus.MINED
        session.add(tx)
        session.flush()
        tx_id = tx.id
    with session_scope(session_factory) as session:
        loaded = session.get_one(ChainTransaction, tx_id)
        assert loaded.mined_at == mined
        assert loaded.mined_at is not None
        assert loaded.mined_at.tzinfo is UTC
        assert loaded.mined_at.hour == 1
        assert loaded.created_at.tzinfo is UTC
        assert loaded.first_sent_at is None
        assert loaded.broadcast_count == 0
        assert loaded.status is ChainTransactionStatus.MINED
        assert loaded.raw_tx == b"\x02\xf8" + bytes(range(256))
    with session_factory() as session:
        tx = session.get_one(ChainTransaction, tx_id)
        tx.last_sent_at = datetime(2030, 1, 1)  # naive on purpose
        with pytest.raises(StatementError, match="naive"):
            session.flush()


def test_updated_at_moves_on_update(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        op = _operation(None, None)
        session.add(op)
        session.flush()
        op_id, created = op.id, op.updated_at
    with session_scope(session_factory) as session:
        loaded = session.scalars(select(Operation).where(Operation.id == op_id)).one()
        loaded.status = OperationStatus.SUBMITTED
    with session_scope(session_factory) as session:
        loaded = session.scalars(select(Operation).where(Operation.id == op_id)).one()
        assert loaded.updated_at > created
        assert loaded.created_at == created


def test_seq_orders_operations_and_a_transaction_carries_several(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as session:
        ops = [_operation(None, f"k{i}") for i in range(5)]
        for op in ops:
            session.add(op)
            session.flush()
        tx = _chain_tx(0)
        session.add(tx)
        tx.operations.extend(ops[1:3])
        ids_in_order = [op.id for op in ops]
    with session_scope(session_factory) as session:
        pending = session.scalars(
            select(Operation)
            .where(Operation.status == OperationStatus.PENDING)
            .order_by(Operation.seq)
        ).all()
        assert [op.id for op in pending] == ids_in_order
        seqs = [op.seq for op in pending]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 5
        carried = session.scalars(select(ChainTransaction)).one().operations
        assert [op.id for op in carried] == ids_in_order[1:3]


def test_seq_is_never_reused(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        op = _operation(None, None)
        session.add(op)
        session.flush()
        first = op.seq
    with session_scope(session_factory) as session:
        session.delete(session.scalars(select(Operation)).one())
    with session_scope(session_factory) as session:
        op = _operation(None, None)
        session.add(op)
        session.flush()
        assert op.seq > first
