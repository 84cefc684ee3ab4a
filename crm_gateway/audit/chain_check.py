"""Check the chain itself: every block links back to genesis, every recorded contract is there.

`verify_chain` reads the headers from genesis to the head in bounded ranges (one JSON-RPC batch
of `eth_getBlockByNumber` per range where the node takes batches; one call per block on the
embedded chain, which is slow for long chains but fine for tests) and checks that each block's
parent hash is the hash of the block before it, and that block 0 has a zero parent. Then every
contract of the deployment record must still have code, and its deployment transaction's receipt
must name the recorded address and block. `recorded` blocks (those of the access log's anchors)
must still hold the hashes the gateway saw when they were mined, so a reorg below an anchor, or a
different chain under the same id, is named. Block hashes are the node's: checking them against
the header fields would need each network's header rules (QBFT seals differ), so the links are
checked, not the hashes' preimages.

Genesis is the block that block 1 names as its parent (see `chain.genesis`: Anvil answers block 0
by number with one of several genesis blocks after it reloads its state file), and it must be the
genesis the deployment record names, so a different chain under the same chain id is named as
such rather than by its missing contracts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3
from web3.types import RPCEndpoint

from crm_gateway.chain.calls import batch_requester
from crm_gateway.chain.connection import Chain
from crm_gateway.chain.deployments import DeploymentRecord
from crm_gateway.chain.genesis import ZERO_HASH, hex_hash, is_genesis
from crm_gateway.store import audit as log_store
from crm_gateway.store.models import AuditBatchStatus

DEFAULT_RANGE = 200


@dataclass(frozen=True)
class ChainReport:
    head: int
    blocks: int
    deployments: int
    problem: str | None

    @property
    def intact(self) -> bool:
        return self.problem is None

    @property
    def summary(self) -> str:
        if self.problem is not None:
            return self.problem
        return (
            f"intact: blocks 0 to {self.head} link back to genesis, "
            f"{self.deployments} recorded contracts have their code"
        )


def block_headers(w3: Web3, first: int, last: int) -> list[tuple[int, str, str]]:
    """`(number, hash, parent hash)` of blocks `first..last`, one batch where supported."""
    batch = batch_requester(w3)
    if batch is not None:
        responses = batch(
            [(RPCEndpoint("eth_getBlockByNumber"), [hex(n), False]) for n in range(first, last + 1)]
        )
        if isinstance(responses, list):
            headers = []
            for response in cast(list[dict[str, Any]], responses):
                block = response.get("result")
                if not block:
                    raise RuntimeError(f"the node did not return a block: {response.get('error')}")
                number = int(block["number"], 16)
                headers.append((number, hex_hash(block["hash"]), hex_hash(block["parentHash"])))
            return sorted(headers)
    found = []
    for number in range(first, last + 1):
        block = w3.eth.get_block(number)
        found.append((number, hex_hash(block["hash"]), hex_hash(block["parentHash"])))
    return found


def recorded_anchors(sessions: sessionmaker[Session]) -> dict[int, tuple[str, str]]:
    """What `verify_chain` checks the headers against: block number -> (the hash this gateway
    saw there, which anchor it mined there), for every anchored access-log batch."""
    with sessions() as session:
        anchors = log_store.batches(session, status=AuditBatchStatus.ANCHORED)
    return {
        int(b.block_number): (
            str(b.block_hash),
            f"the anchor of access-log batch {b.chain_batch_id}",
        )
        for b in anchors
        if b.block_number is not None and b.block_hash is not None
    }


def verify_chain(
    chain: Chain,
    record: DeploymentRecord,
    *,
    recorded: Mapping[int, tuple[str, str]] | None = None,
    block_range: int = DEFAULT_RANGE,
    on_progress: Callable[[int, int], None] | None = None,
) -> ChainReport:
    """Walk the headers and the deployment record; stop at the first problem.

    `recorded`: block number -> (hash the gateway saw there, what it anchored there).
    """
    w3 = chain.w3
    head = chain.latest_block()
    recorded = recorded or {}
    hashes: dict[int, str] = {}
    previous: str | None = None
    for first in range(0, head + 1, block_range):
        last = min(head, first + block_range - 1)
        for number, block_hash, parent in block_headers(w3, first, last):
            if number == 0 and parent != ZERO_HASH:
                return ChainReport(head, number, 0, f"block 0 has a parent ({parent})")
            if number == 1 and parent != previous and is_genesis(w3, parent):
                # Anvil after a reload: block 0 by number is one of its re-made geneses.
                previous = hashes[0] = parent
            if number > 0 and parent != previous:
                return ChainReport(
                    head,
                    number,
                    0,
                    f"block {number}'s parent hash {parent} is not the hash of block "
                    f"{number - 1} ({previous}): the chain does not link back to genesis",
                )
            seen = recorded.get(number)
            if seen is not None and seen[0].lower() != block_hash:
                return ChainReport(
                    head,
                    number,
                    0,
                    f"block {number} is {block_hash} on the chain, not {seen[0]} where "
                    f"{seen[1]} was mined: the chain was reorganised or replaced below it",
                )
            hashes[number] = block_hash
            previous = block_hash
            if number == min(head, 1):
                problem = _check_genesis(record, hashes[0])
                if problem is not None:
                    return ChainReport(head, number, 0, problem)
        if on_progress is not None:
            on_progress(last + 1, head + 1)
    missing = [n for n in recorded if n > head]
    if missing:
        number = min(missing)
        return ChainReport(
            head,
            head + 1,
            0,
            f"block {number}, where {recorded[number][1]} was mined, is beyond the chain head "
            f"{head}: the chain was reset or replaced",
        )
    for name, deployed in sorted(record.contracts.items()):
        problem = _check_deployment(
            w3, chain, name, deployed.address, deployed.tx_hash, deployed.block_number
        )
        if problem is not None:
            return ChainReport(head, head + 1, 0, problem)
    return ChainReport(head, head + 1, len(record.contracts), None)


def _check_genesis(record: DeploymentRecord, genesis: str) -> str | None:
    recorded = record.genesis_hash
    if recorded is None or recorded.lower() == genesis:
        return None
    return (
        f"the chain's genesis block is {genesis}, not {recorded.lower()} as the deployment "
        f"record of chain {record.chain_id} says: this is a different chain under the same id"
    )


def _check_deployment(
    w3: Web3, chain: Chain, name: str, address: str, tx_hash: str, block_number: int
) -> str | None:
    if not chain.has_code(address):
        return f"{name} has no code at its recorded address {address}"
    try:
        receipt = w3.eth.get_transaction_receipt(cast(Any, tx_hash))
    except Exception:
        return f"{name}'s deployment transaction {tx_hash} is not on the chain"
    if (
        int(receipt["blockNumber"]) != block_number
        or str(receipt.get("contractAddress") or "").lower() != address.lower()
    ):
        return (
            f"{name}'s deployment transaction {tx_hash} created "
            f"{receipt.get('contractAddress')} in block {receipt['blockNumber']}, "
            f"not {address} in block {block_number} as recorded"
        )
    return None
