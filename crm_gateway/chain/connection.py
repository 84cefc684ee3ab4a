"""One way to reach a chain, whatever its kind.

`embedded` runs eth-tester on py-evm inside this process; `anvil` talks to the project's Anvil node
over HTTP; `rpc` talks to any EVM JSON-RPC endpoint (Besu, GoQuorum). Everything above this module
sees the same `Chain` object and never asks which kind it is, except for the development faucet.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from eth_typing import ChecksumAddress
from web3 import HTTPProvider, Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import RPCEndpoint, RPCResponse, Wei

from crm_gateway.config import ChainKind, Settings


class ChainUnavailable(RuntimeError):
    """The configured chain cannot be reached or is not the chain we expect."""


class _SerializedTesterProvider(EthereumTesterProvider):
    """eth-tester is not thread-safe; the gateway calls it from several threads."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.RLock()

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        with self._lock:
            return super().make_request(method, params)


@dataclass
class Chain:
    """A connected chain: the web3 client plus what we know about where it is."""

    kind: ChainKind
    w3: Web3
    rpc_url: str | None
    chain_id: int = field(init=False)
    # The embedded chain's deployment record lives (and dies) with the chain object itself.
    memory_deployments: dict[int, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        try:
            self.chain_id = int(self.w3.eth.chain_id)
        except Exception as exc:
            where = self.rpc_url or self.kind.value
            raise ChainUnavailable(f"the chain at {where} does not answer: {exc}") from exc

    def latest_block(self) -> int:
        return int(self.w3.eth.block_number)

    def has_code(self, address: str) -> bool:
        return len(self.w3.eth.get_code(Web3.to_checksum_address(address))) > 0

    def dev_fund(self, address: ChecksumAddress, wei: int) -> None:
        """Give a development account ether. Only the development chains have a faucet."""
        if self.kind is ChainKind.EMBEDDED:
            rich = self.w3.eth.accounts[0]
            if self.w3.eth.get_balance(address) < wei:
                tx_hash = self.w3.eth.send_transaction(
                    {"from": rich, "to": address, "value": Wei(wei)}
                )
                self.w3.eth.wait_for_transaction_receipt(tx_hash)
        elif self.kind is ChainKind.ANVIL:
            from crm_gateway.chain.anvil import fund_dev_account

            fund_dev_account(self.w3, address, wei)
        else:
            raise ChainUnavailable(
                "an rpc chain has no faucet: fund the account on the network itself"
            )


def connect(settings: Settings, *, rpc_url: str | None = None) -> Chain:
    """Connect to the chain the settings name, and check its chain id when one is expected."""
    kind = settings.chain_kind
    if kind is ChainKind.EMBEDDED:
        chain = Chain(kind=kind, w3=Web3(_SerializedTesterProvider()), rpc_url=None)
    else:
        url = rpc_url or (
            f"http://{settings.anvil_host}:{settings.anvil_port}"
            if kind is ChainKind.ANVIL
            else settings.rpc_url
        )
        provider = HTTPProvider(
            url,
            request_kwargs={"timeout": settings.rpc_timeout_seconds},
            # web3 checks the chain id of every call, estimate and transaction with an
            # `eth_chainId` round trip of its own; the id is checked once, below, and kept.
            cache_allowed_requests=True,
            cacheable_requests={RPCEndpoint("eth_chainId")},
        )
        chain = Chain(kind=kind, w3=Web3(provider), rpc_url=url)
    expected = settings.expected_chain_id
    if kind is ChainKind.ANVIL:
        expected = expected or settings.anvil_chain_id
    if expected is not None and chain.chain_id != expected:
        raise ChainUnavailable(
            f"the chain at {chain.rpc_url} has chain id {chain.chain_id}, expected {expected}"
        )
    return chain
