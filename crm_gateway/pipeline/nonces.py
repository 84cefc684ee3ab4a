"""Nonces allocated by us, not by the node.

web3's automatic nonce (`eth_getTransactionCount(..., "pending")` per transaction) hands the same
nonce to concurrent senders. Here one allocator per process counts up from the larger of the
chain's pending count and the highest nonce already recorded in the database, and the database's
unique (sender, nonce) constraint catches another process that allocated the same one.

Only the process holding an account's `signer:` lease sends for it (`pipeline.sender`); on taking
the lease it forgets what it counted before (another process may have signed since), and a nonce
taken for a transaction that is then not recorded (a rollback, operations claimed by another
process) is forgotten too, so the account's nonces are neither reused nor skipped.
"""

from __future__ import annotations

import threading

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from web3 import Web3

from crm_gateway.store.models import ChainTransaction


class NonceAllocator:
    def __init__(self, w3: Web3) -> None:
        self._w3 = w3
        self._next: dict[str, int] = {}
        self._lock = threading.Lock()

    def allocate(self, session: Session, sender: str) -> int:
        with self._lock:
            if sender not in self._next:
                self._next[sender] = self._initial(session, sender)
            nonce = self._next[sender]
            self._next[sender] = nonce + 1
            return nonce

    def forget(self, sender: str) -> None:
        """Re-read the starting point on next use (after a conflict or a lost transaction)."""
        with self._lock:
            self._next.pop(sender, None)

    def _initial(self, session: Session, sender: str) -> int:
        on_chain = int(
            self._w3.eth.get_transaction_count(Web3.to_checksum_address(sender), "pending")
        )
        recorded = session.scalar(
            select(func.max(ChainTransaction.nonce)).where(ChainTransaction.sender == sender)
        )
        return max(on_chain, -1 if recorded is None else int(recorded) + 1)
