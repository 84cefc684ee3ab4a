"""Numbered, idempotent deployment steps: `migrations/NNNN_name.py`, each with `apply(ctx)`.

The runner applies the steps the deployment record has not seen, in order, and records each one
after it succeeds. A step deploys through `ctx.deploy`, which does nothing when the record already
has the contract, so a step interrupted half-way can simply be run again.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from crm_gateway.chain.artifacts import Artifacts
from crm_gateway.chain.connection import Chain
from crm_gateway.chain.deployments import (
    DeployedContract,
    DeploymentRecord,
    DeploymentStore,
    verify_record,
)
from crm_gateway.chain.fees import fee_fields
from crm_gateway.chain.genesis import genesis_hash
from crm_gateway.config import Settings

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+$")


class MigrationError(RuntimeError):
    """A migration could not be applied; the message says which and why."""


@dataclass(frozen=True)
class Migration:
    name: str
    path: Path

    def load(self) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"crm_migrations.{self.name}", self.path)
        if spec is None or spec.loader is None:
            raise MigrationError(f"cannot load migration {self.path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not callable(getattr(module, "apply", None)):
            raise MigrationError(f"migration {self.name} has no apply(ctx) function")
        return module


def discover(directory: Path) -> list[Migration]:
    """The migrations in a directory, in number order; numbers must be unique."""
    found = []
    numbers: dict[str, str] = {}
    for path in sorted(directory.glob("*.py")):
        match = _MIGRATION_NAME.match(path.stem)
        if match is None:
            continue
        number = match.group(1)
        if number in numbers:
            raise MigrationError(f"migrations {numbers[number]} and {path.stem} share a number")
        numbers[number] = path.stem
        found.append(Migration(path.stem, path))
    return found


class MigrationContext:
    """What a migration step may use: settings, the chain, the deployer and the record."""

    def __init__(
        self,
        *,
        settings: Settings,
        chain: Chain,
        deployer: LocalAccount,
        artifacts: Artifacts,
        store: DeploymentStore,
        record: DeploymentRecord,
        migration: str,
    ) -> None:
        self.settings = settings
        self.chain = chain
        self.deployer = deployer
        self.artifacts = artifacts
        self._store = store
        self.record = record
        self.migration = migration

    def deploy(self, name: str, *constructor_args: Any) -> str:
        """Deploy `name` unless the record has it; return its address."""
        existing = self.record.address_of(name)
        if existing is not None:
            return existing
        artifact = self.artifacts[name]
        w3 = self.chain.w3
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        receipt = self.transact(factory.constructor(*constructor_args).build_transaction)
        address = Web3.to_checksum_address(receipt["contractAddress"])
        self.record.contracts[name] = DeployedContract(
            address=address,
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
            block_number=int(receipt["blockNumber"]),
            artifact_hash=artifact.artifact_hash,
            migration=self.migration,
        )
        self._store.save(self.record)
        return address

    def call(self, name: str, function: str, *args: Any) -> Any:
        """Send one transaction to a deployed contract as the deployer and wait for it."""
        contract = self.contract(name)
        return self.transact(contract.functions[function](*args).build_transaction)

    def contract(self, name: str) -> Any:
        address = self.record.address_of(name)
        if address is None:
            raise MigrationError(f"{name} is not deployed yet")
        return self.chain.w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=self.artifacts[name].abi
        )

    def transact(self, build: Callable[[Any], Any]) -> Any:
        w3 = self.chain.w3
        params: dict[str, Any] = {
            "from": self.deployer.address,
            "nonce": w3.eth.get_transaction_count(self.deployer.address, "pending"),
            "chainId": self.chain.chain_id,
            **fee_fields(w3),
        }
        try:
            tx = build(params)
        except Exception as exc:
            revert = self.artifacts.error_decoder.decode_exception(exc)
            if revert is None:
                raise
            raise MigrationError(f"{self.migration}: the chain refused it with {revert}") from exc
        signed = self.deployer.sign_transaction(tx)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        if receipt["status"] != 1:
            raise MigrationError(f"{self.migration}: transaction {tx_hash.hex()} reverted")
        return receipt


@dataclass(frozen=True)
class MigrationReport:
    applied: list[str]
    skipped: list[str]
    record: DeploymentRecord


def apply_migrations(
    *,
    settings: Settings,
    chain: Chain,
    deployer: LocalAccount,
    artifacts: Artifacts,
    store: DeploymentStore,
    on_step: Callable[[str, bool], None] | None = None,
) -> MigrationReport:
    """Apply every pending migration; `on_step(name, applied)` reports progress."""
    record = store.load()
    verify_record(record, chain, store.path)
    if record.genesis_hash is None:
        # A new record, or one made before genesis was recorded (its contracts were just found
        # on this chain): from now on `chain verify` names a chain that starts elsewhere.
        record.genesis_hash = genesis_hash(chain.w3)
        if record.contracts:
            store.save(record)
    applied, skipped = [], []
    for migration in discover(settings.path(settings.migrations_dir)):
        if migration.name in record.migrations:
            skipped.append(migration.name)
            if on_step:
                on_step(migration.name, False)
            continue
        module = migration.load()
        context = MigrationContext(
            settings=settings,
            chain=chain,
            deployer=deployer,
            artifacts=artifacts,
            store=store,
            record=record,
            migration=migration.name,
        )
        module.apply(context)
        record.deployer = record.deployer or deployer.address
        record.migrations.append(migration.name)
        store.save(record)
        applied.append(migration.name)
        if on_step:
            on_step(migration.name, True)
    return MigrationReport(applied=applied, skipped=skipped, record=record)
