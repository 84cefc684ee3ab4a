"""Where each contract lives on a chain: `abi/deployments/<chain-id>.json`.

The record is the single source of truth for addresses. It is written atomically after every
deployment, and it is checked against the chain before use: if the chain no longer has code at a
recorded address (a reset development chain), we refuse to continue rather than overwrite history.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crm_gateway.chain.connection import Chain


class DeploymentMismatch(RuntimeError):
    """The record and the chain disagree; the message says how, in one sentence."""


@dataclass
class DeployedContract:
    address: str
    tx_hash: str
    block_number: int
    artifact_hash: str
    migration: str


@dataclass
class DeploymentRecord:
    chain_id: int
    contracts: dict[str, DeployedContract] = field(default_factory=dict)
    migrations: list[str] = field(default_factory=list)
    # The account that deployed (CONSORTIUM_ADMIN, first admin of the founding organisation).
    deployer: str | None = None
    # The hash of the chain's genesis block (see chain/genesis.py): `chain verify` refuses a
    # chain under the same id that does not start from it. None in records made before it.
    genesis_hash: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "chainId": self.chain_id,
            "contracts": {
                name: {
                    "address": c.address,
                    "txHash": c.tx_hash,
                    "blockNumber": c.block_number,
                    "artifactHash": c.artifact_hash,
                    "migration": c.migration,
                }
                for name, c in sorted(self.contracts.items())
            },
            "migrations": list(self.migrations),
            "deployer": self.deployer,
            "genesisHash": self.genesis_hash,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeploymentRecord:
        return cls(
            chain_id=int(data["chainId"]),
            contracts={
                name: DeployedContract(
                    address=c["address"],
                    tx_hash=c["txHash"],
                    block_number=int(c["blockNumber"]),
                    artifact_hash=c["artifactHash"],
                    migration=c["migration"],
                )
                for name, c in data.get("contracts", {}).items()
            },
            migrations=list(data.get("migrations", [])),
            deployer=data.get("deployer"),
            genesis_hash=data.get("genesisHash"),
        )

    def address_of(self, name: str) -> str | None:
        deployed = self.contracts.get(name)
        return deployed.address if deployed else None

    def summary(self) -> dict[str, Any]:
        return {name: asdict(c) for name, c in sorted(self.contracts.items())}


class DeploymentStore:
    """Loads and saves the record of one chain; `directory=None` keeps it in memory only.

    The embedded chain lives and dies with its process, so its record is never written to disk.
    """

    def __init__(
        self,
        directory: Path | None,
        chain_id: int,
        *,
        memory: dict[int, DeploymentRecord] | None = None,
    ) -> None:
        self.directory = directory
        self.chain_id = chain_id
        # In-memory records are shared through `memory`, which lives as long as the chain does.
        self._memory = memory if memory is not None else {}

    @property
    def path(self) -> Path | None:
        return None if self.directory is None else self.directory / f"{self.chain_id}.json"

    def load(self) -> DeploymentRecord:
        path = self.path
        if path is None:
            return self._memory.setdefault(self.chain_id, DeploymentRecord(chain_id=self.chain_id))
        if not path.is_file():
            return DeploymentRecord(chain_id=self.chain_id)
        record = DeploymentRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
        if record.chain_id != self.chain_id:
            raise DeploymentMismatch(
                f"{path} records chain id {record.chain_id} but the chain's id is {self.chain_id}"
            )
        return record

    def save(self, record: DeploymentRecord) -> None:
        path = self.path
        if path is None:
            self._memory[self.chain_id] = record
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(record.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)


def verify_record(record: DeploymentRecord, chain: Chain, record_path: Path | None) -> None:
    """Refuse a record whose contracts are not on this chain any more."""
    for name, deployed in sorted(record.contracts.items()):
        if not chain.has_code(deployed.address):
            where = record_path or "the deployment record"
            raise DeploymentMismatch(
                f"chain {record.chain_id} has no code at {deployed.address}, where {where} "
                f"says {name} was deployed: the chain was reset, so restore its state or "
                f"move the record aside before deploying again"
            )
