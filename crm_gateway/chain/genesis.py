"""The chain's genesis block, as its blocks name it.

Anvil (1.5.1, measured) re-creates a genesis block each time it loads its state file, stamped
with the loaded head's time, so its hash differs from the original one whenever a block was
mined in a later second than genesis. It then loads the dumped blocks, which hold the original
genesis and every genesis an earlier load made, and maps number 0 to whichever of them it loads
last (the dump's order varies): `eth_getBlockByNumber(0)` answers a different block from one
restart to the next, while block 1 still names the original genesis as its parent, and that
block is still served by hash. So the genesis of a chain is block 1's parent (block 0 itself
only while there is no block 1).
"""

from __future__ import annotations

from typing import Any, cast

from web3 import Web3
from web3.exceptions import BlockNotFound

ZERO_HASH = "0x" + "00" * 32


def hex_hash(value: Any) -> str:
    """A hash from a node's answer as lower-case `0x` hex."""
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    return str(value).lower()


def is_genesis(w3: Web3, block_hash: str) -> bool:
    """Whether the node serves `block_hash` by hash as a block 0 with no parent."""
    try:
        block = w3.eth.get_block(cast(Any, block_hash))
    except BlockNotFound:
        return False
    return int(block["number"]) == 0 and hex_hash(block["parentHash"]) == ZERO_HASH


def genesis_hash(w3: Web3) -> str:
    """The hash of the genesis block the chain's blocks link back to."""
    if int(w3.eth.block_number) == 0:
        return hex_hash(w3.eth.get_block(0)["hash"])
    parent = hex_hash(w3.eth.get_block(1)["parentHash"])
    if not is_genesis(w3, parent):
        raise ValueError(f"block 1's parent {parent} is not a genesis block on this node")
    return parent
