"""Contract bindings: the deployed contracts of one chain, from `abi/` and the deployment record."""

from __future__ import annotations

from typing import Any, cast

from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
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
        self._events: dict[tuple[str, bytes], str] = {}

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
        for item in self.artifacts[name].abi:
            if item.get("type") == "event":
                topic = event_abi_to_log_topic(cast(ABIEvent, item))
                self._events[(address.lower(), topic)] = item["name"]
        return contract

    def deployed(self) -> dict[str, str]:
        return {name: c.address for name, c in sorted(self.record.contracts.items())}

    def decode_log(self, log: LogReceipt) -> dict[str, Any] | None:
        """`{"contract", "event", "args"}` for a log of one of our contracts, else None."""
        address = str(log["address"]).lower()
        for name, deployed in self.record.contracts.items():
            if deployed.address.lower() == address:
                contract = self[name]
                break
        else:
            return None
        if not log["topics"]:
            return None
        event_name = self._events.get((address, bytes(log["topics"][0])))
        if event_name is None:
            return None
        decoded = contract.events[event_name]().process_log(log)
        return {"contract": name, "event": event_name, "args": to_jsonable(dict(decoded["args"]))}

    def decode_receipt(self, receipt: TxReceipt) -> list[dict[str, Any]]:
        return [e for log in receipt["logs"] if (e := self.decode_log(log)) is not None]
