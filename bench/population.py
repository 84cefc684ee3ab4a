"""Benchmark set-up straight on the chain: many customers, each with a linked wallet, quickly.

This is set-up, not what is measured, so it does not go through the gateway: a DATA_STEWARD
account of the bench's own (not in the gateway's keystore, so its nonces never collide with the
gateway's pipeline) registers the customers with `registerBatch` and links each one's wallet with
`linkWallet`, the wallet having signed the EIP-712 `LinkWallet` message exactly as a wallet does
(eth-account's `sign_typed_data`). Anvil's automine is paused meanwhile, so the transactions go in
a few full blocks rather than one block each.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.types import RPCEndpoint

from crm_gateway.chain.eip712 import link_wallet_typed_data

FAR_FUTURE = 2**48
REGISTER_BATCH = 100
REGISTER_GAS_PER_ITEM = 100_000  # about 94k measured
LINK_GAS = 150_000
RPC_BATCH = 200


@dataclass(frozen=True)
class Customer:
    customer_id: str  # 0x + 64 hex digits
    wallet: LocalAccount


class Populator:
    def __init__(self, w3: Web3, steward: LocalAccount, registry: Any, chain_id: int) -> None:
        self.w3 = w3
        self.steward = steward
        self.registry = registry
        self.chain_id = chain_id
        self._nonce = int(w3.eth.get_transaction_count(steward.address))

    def customers_with_wallets(self, count: int) -> list[Customer]:
        """`count` new customers of the steward's organisation, each with a linked wallet."""
        customers = [
            Customer("0x" + secrets.token_bytes(32).hex(), Account.create()) for _ in range(count)
        ]
        registrations = []
        for start in range(0, count, REGISTER_BATCH):
            chunk = customers[start : start + REGISTER_BATCH]
            call = self.registry.functions.registerBatch(
                [bytes.fromhex(c.customer_id[2:]) for c in chunk],
                [keccak(text=c.customer_id) for c in chunk],
            )
            registrations.append(self._sign(call, 60_000 + REGISTER_GAS_PER_ITEM * len(chunk)))
        self._mine_all(registrations)
        self._mine_all([self._sign(self._link(c), LINK_GAS) for c in customers])
        return customers

    def _link(self, customer: Customer) -> Any:
        typed = link_wallet_typed_data(
            self.chain_id,
            self.registry.address,
            customer.customer_id,
            customer.wallet.address,
            0,
            FAR_FUTURE,
        )
        signature = Account.sign_typed_data(customer.wallet.key, full_message=typed).signature
        return self.registry.functions.linkWallet(
            bytes.fromhex(customer.customer_id[2:]),
            customer.wallet.address,
            FAR_FUTURE,
            bytes(signature),
        )

    def _sign(self, call: Any, gas: int) -> tuple[bytes, int]:
        tx = call.build_transaction(
            {
                "from": self.steward.address,
                "nonce": self._nonce,
                "gas": gas,
                "chainId": self.chain_id,
                "maxFeePerGas": 10**13,  # base fees climb over a run of full blocks
                "maxPriorityFeePerGas": 10**9,
            }
        )
        self._nonce += 1
        return bytes(self.steward.sign_transaction(tx).raw_transaction), gas

    def _mine_all(self, raw: Sequence[tuple[bytes, int]]) -> None:
        """Send the transactions with automine paused and mine them, a block's worth at a time.

        Each wave's gas limits add up to at most the block gas limit: Anvil drops the pending
        transactions that come after one that did not fit in the block it mined.
        """
        provider: Any = self.w3.provider
        limit = int(self.w3.eth.get_block("latest")["gasLimit"])
        provider.make_request(RPCEndpoint("evm_setAutomine"), [False])
        hashes: list[str] = []
        try:
            wave: list[bytes] = []
            used = 0
            for tx, gas in [*raw, (b"", 0)]:
                if wave and (not tx or used + gas > limit):
                    hashes += self._send_and_mine(wave)
                    wave, used = [], 0
                if tx:
                    wave.append(tx)
                    used += gas
        finally:
            provider.make_request(RPCEndpoint("evm_setAutomine"), [True])
        for start in range(0, len(hashes), RPC_BATCH):
            receipts = provider.make_batch_request(
                [
                    (RPCEndpoint("eth_getTransactionReceipt"), [h])
                    for h in hashes[start : start + RPC_BATCH]
                ]
            )
            failed = [r for r in receipts if not r.get("result") or r["result"]["status"] != "0x1"]
            if failed:
                raise RuntimeError(f"{len(failed)} set-up transactions failed or went missing")

    def _send_and_mine(self, wave: Sequence[bytes]) -> list[str]:
        provider: Any = self.w3.provider
        hashes: list[str] = []
        for start in range(0, len(wave), RPC_BATCH):
            answers = provider.make_batch_request(
                [
                    (RPCEndpoint("eth_sendRawTransaction"), ["0x" + tx.hex()])
                    for tx in wave[start : start + RPC_BATCH]
                ]
            )
            for answer in answers:
                if "error" in answer:
                    raise RuntimeError(f"set-up transaction refused: {answer['error']}")
                hashes.append(str(answer["result"]))
        provider.make_request(RPCEndpoint("evm_mine"), [])
        return hashes
