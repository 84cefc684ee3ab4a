"""Contract bindings: the deployed contracts of one chain, from `abi/` and the deployment record."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from eth_abi.abi import decode
from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.types import LogReceipt, TxReceipt

from crm_gateway.chain.artifacts import Artifacts
from crm_gateway.chain.connection import Chain
from crm_gateway.chain.deployments import DeploymentRecord
from crm_gateway.chain.jsonable import to_jsonable


class ContractNotDeployed(LookupError):
    """The deployment record has no address for that contract on this chain."""


class Contracts:
    """Web3 contract objects for every deployed contract, built once and shared."""

    def __init__(self, chain: Chain, artifacts: Artifacts, record: DeploymentRecord) -> None:
        self.chain = chain
        self.artifacts = artifacts
        self.record = record
        self._cache: dict[str, Contract] = {}
        self._decoders: dict[tuple[str, bytes], _EventDecoder] | None = None

    def __getitem__(self, name: str) -> Contract:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        address = self.record.address_of(name)
        if address is None:
            raise ContractNotDeployed(
                f"{name} is not deployed on chain {self.chain.chain_id}; run `crm-chaincode deploy`"
            )
        contract = self.chain.w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=self.artifacts[name].abi
        )
        self._cache[name] = contract
        return contract

    def deployed(self) -> dict[str, str]:
        return {name: c.address for name, c in sorted(self.record.contracts.items())}

    def decode_log(self, log: LogReceipt | Mapping[str, Any]) -> dict[str, Any] | None:
        """`{"contract", "event", "args"}` for a log of one of our contracts, else None.

        Takes a log as web3 formats it or as the node sends it (hex strings). Events are
        decoded with eth-abi from a decoder prepared once per event (web3's `process_log`
        re-reads the ABI on every call: about 0.4 ms a log, the largest cost of settling a batch
        of a hundred changes); the result is the same, addresses checksummed.
        """
        if self._decoders is None:
            self._decoders = self._build_decoders()
        topics = log["topics"]
        if not topics:
            return None
        decoder = self._decoders.get((str(log["address"]).lower(), _as_bytes(topics[0])))
        if decoder is None:
            return None
        if decoder.fallback:
            contract = self[decoder.contract]
            decoded = contract.events[decoder.event]().process_log(cast(LogReceipt, log))
            args: dict[str, Any] = dict(decoded["args"])
        else:
            args = decoder.decode([_as_bytes(t) for t in topics[1:]], _as_bytes(log["data"]))
        return {"contract": decoder.contract, "event": decoder.event, "args": to_jsonable(args)}

    def decode_receipt(self, receipt: TxReceipt | Mapping[str, Any]) -> list[dict[str, Any]]:
        return [e for log in receipt["logs"] if (e := self.decode_log(log)) is not None]

    def _build_decoders(self) -> dict[tuple[str, bytes], _EventDecoder]:
        decoders: dict[tuple[str, bytes], _EventDecoder] = {}
        for name, deployed in self.record.contracts.items():
            if name not in self.artifacts:
                continue
            for item in self.artifacts[name].abi:
                if item.get("type") != "event" or item.get("anonymous"):
                    continue
                topic = event_abi_to_log_topic(cast(ABIEvent, item))
                decoders[(deployed.address.lower(), topic)] = _EventDecoder.of(name, item)
        return decoders


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith("0x") else value)
    return bytes(value)


_STATIC_TOPIC = re.compile(r"^(address|bool|u?int\d*|bytes([1-9]|[12]\d|3[0-2]))$")


@dataclass(frozen=True)
class _EventDecoder:
    """How to decode one event: its indexed inputs from the topics, the others from the data."""

    contract: str
    event: str
    inputs: tuple[tuple[str, bool], ...]  # (name, indexed), in declaration order
    topic_types: tuple[str, ...]
    data_types: tuple[str, ...]
    fallback: bool  # a type decoded here would differ from web3's result: let web3 do it
    static_data: bool  # every non-indexed input is one 32-byte word

    @classmethod
    def of(cls, contract: str, abi: Mapping[str, Any]) -> _EventDecoder:
        inputs = list(abi.get("inputs", []))
        topic_types = tuple(str(i["type"]) for i in inputs if i.get("indexed"))
        data_types = tuple(str(i["type"]) for i in inputs if not i.get("indexed"))
        simple = all(_STATIC_TOPIC.match(t) for t in topic_types) and not any(
            t.startswith("tuple") for t in data_types
        )
        return cls(
            contract=contract,
            event=str(abi["name"]),
            inputs=tuple((str(i["name"]), bool(i.get("indexed"))) for i in inputs),
            topic_types=topic_types,
            data_types=data_types,
            fallback=not simple,
            static_data=all(_STATIC_TOPIC.match(t) for t in data_types),
        )

    def decode(self, topics: Sequence[bytes], data: bytes) -> dict[str, Any]:
        if len(topics) != len(self.topic_types):
            raise ValueError(f"{self.event}: expected {len(self.topic_types)} indexed topics")
        indexed = iter([_word(k, t) for k, t in zip(self.topic_types, topics, strict=True)])
        if self.static_data:
            if len(data) < 32 * len(self.data_types):
                raise ValueError(f"{self.event}: data too short")
            values = [_word(k, data[32 * i : 32 * i + 32]) for i, k in enumerate(self.data_types)]
        else:
            values = [_checksummed(v) for v in decode(list(self.data_types), data)]
        others = iter(values)
        return {
            name: next(indexed) if is_indexed else next(others) for name, is_indexed in self.inputs
        }


def _word(kind: str, word: bytes) -> Any:
    """A static ABI value from its 32-byte word (what eth-abi returns, addresses checksummed)."""
    if kind == "address":
        return _checksum(word[12:])
    if kind == "bool":
        return word[31] == 1
    if kind.startswith("uint"):
        return int.from_bytes(word, "big")
    if kind.startswith("int"):
        return int.from_bytes(word, "big", signed=True)
    return word[: int(kind[5:])]  # bytesN


@lru_cache(maxsize=65_536)
def _checksum(raw: bytes) -> str:
    return str(to_checksum_address("0x" + raw.hex()))


def _checksummed(value: Any) -> Any:
    if isinstance(value, str) and len(value) == 42 and value.startswith("0x"):
        return to_checksum_address(value)
    if isinstance(value, tuple | list):
        return type(value)(_checksummed(v) for v in value)
    return value
