"""An event as the indexer hands it to the projections: a decoded log and where it was mined."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crm_gateway.store.models import ChainEvent

EventKey = tuple[str, str]  # (contract name, event name), as `Contracts.decode_log` names them


@dataclass(frozen=True, slots=True)
class IndexedEvent:
    """One decoded log of one of our contracts, on the chain the indexer follows."""

    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    contract: str
    event: str
    args: dict[str, Any]
    block_timestamp: datetime

    @property
    def key(self) -> EventKey:
        return (self.contract, self.event)

    @property
    def position(self) -> tuple[int, int]:
        """Where it sits in the chain's total order of logs."""
        return (self.block_number, self.log_index)

    @property
    def identity(self) -> tuple[str, int]:
        """What makes it unique: the transaction hash and the log index."""
        return (self.tx_hash, self.log_index)

    def row(self) -> dict[str, Any]:
        """The `chain_events` row (without `id`)."""
        return {
            "block_number": self.block_number,
            "block_hash": self.block_hash,
            "tx_hash": self.tx_hash,
            "log_index": self.log_index,
            "contract": self.contract,
            "event": self.event,
            "args": self.args,
            "block_timestamp": self.block_timestamp,
        }

    @classmethod
    def from_row(cls, row: ChainEvent) -> IndexedEvent:
        return cls(
            block_number=row.block_number,
            block_hash=row.block_hash,
            tx_hash=row.tx_hash,
            log_index=row.log_index,
            contract=row.contract,
            event=row.event,
            args=dict(row.args),
            block_timestamp=row.block_timestamp,
        )
