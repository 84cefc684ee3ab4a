"""The consent check's one-statement query and the event loop's own read-only SQLite reader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import OperationalError

from crm_gateway.indexer.read_model import ReadModel
from crm_gateway.indexer.scanner import CURSOR_NAME
from crm_gateway.store.db import make_engine, upgrade_database
from crm_gateway.store.models import IndexerCursor, RmConsent, RmPurpose

CUSTOMER = "0x" + "ab" * 32
PURPOSE = "0x" + "cd" * 32


def _consent(granted: bool = True, version: int = 1, **extra: object) -> dict[str, object]:
    return {
        "customer_id": CUSTOMER,
        "purpose_id": PURPOSE,
        "org_id": 1,
        "granted": granted,
        "purpose_version": version,
        "expires_at": None,
        "receipt_hash": "0x" + "11" * 32,
        "changed_at": datetime(2026, 1, 1, tzinfo=UTC),
        "block_number": 7,
        "tx_hash": "0x" + "22" * 32,
        "log_index": 0,
        **extra,
    }


def test_decisions_with_and_without_a_cursor_on_both_readers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    model = ReadModel(engine)
    local = model.local()
    assert local is not None
    assert local.local() is local
    try:
        for reader in (model, local):
            decision = reader.consent(CUSTOMER, PURPOSE, 1)
            assert (decision.granted, decision.reason, decision.as_of_block) == (
                False,
                "no_consent",
                None,
            )
        with engine.begin() as connection:
            connection.execute(insert(RmConsent).values(**_consent()))
        # Before the indexer's first range (no cursor yet), a consent is still found.
        assert model.consent(CUSTOMER, PURPOSE, 1).reason == "unknown_purpose"
        with engine.begin() as connection:
            connection.execute(
                insert(RmPurpose).values(
                    purpose_id=PURPOSE,
                    controller_org=1,
                    version=1,
                    notice_hash="0x" + "33" * 32,
                    basis="consent",
                    active=True,
                    updated_block=3,
                    updated_at=datetime(2026, 1, 1, tzinfo=UTC),
                )
            )
            connection.execute(
                insert(IndexerCursor).values(
                    name=CURSOR_NAME, block_number=9, block_hash="0x" + "44" * 32
                )
            )
        for reader in (model, local):
            decision = reader.consent(CUSTOMER.upper().replace("0X", "0x"), PURPOSE, 1)
            assert (decision.granted, decision.reason, decision.as_of_block) == (True, None, 9)
            assert decision.block_number == 7
            assert decision.current_purpose_version == decision.purpose_version == 1
            other = reader.consent(CUSTOMER, PURPOSE, 2)
            assert (other.reason, other.as_of_block) == ("no_consent", 9)
        later = datetime.now(UTC) + timedelta(days=1)
        with engine.begin() as connection:
            connection.execute(RmConsent.__table__.delete())
            connection.execute(
                insert(RmConsent).values(**_consent(expires_at=datetime.now(UTC) - timedelta(1)))
            )
        assert local.consent(CUSTOMER, PURPOSE, 1).reason == "expired"
        assert model.consent(CUSTOMER, PURPOSE, 1, now=later).reason == "expired"
        # The loop's reader never writes.
        with pytest.raises(OperationalError), local.engine.begin() as connection:
            connection.execute(RmConsent.__table__.delete())
    finally:
        local.engine.dispose()
        engine.dispose()


def test_no_local_reader_for_in_memory_sqlite() -> None:
    engine = make_engine("sqlite://")
    try:
        assert ReadModel(engine).local() is None
    finally:
        engine.dispose()
