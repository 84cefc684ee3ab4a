"""Gas price fields for a transaction, for chains with and without EIP-1559.

Permissioned networks (Besu QBFT, GoQuorum) often run with a zero gas price and no base fee; public
tooling that insists on EIP-1559 fees fails there. The latest block decides.
"""

from __future__ import annotations

from web3 import Web3
from web3.types import TxParams, Wei

_PRIORITY_FEE = Wei(1_000_000_000)


def fee_fields(w3: Web3) -> TxParams:
    """`maxFeePerGas`/`maxPriorityFeePerGas` where the chain has a base fee, else `gasPrice`."""
    latest = w3.eth.get_block("latest")
    base_fee = latest.get("baseFeePerGas")
    if base_fee is None:
        return {"gasPrice": w3.eth.gas_price}
    if base_fee == 0:
        return {"maxFeePerGas": Wei(0), "maxPriorityFeePerGas": Wei(0)}
    return {
        "maxFeePerGas": Wei(2 * int(base_fee) + _PRIORITY_FEE),
        "maxPriorityFeePerGas": _PRIORITY_FEE,
    }
