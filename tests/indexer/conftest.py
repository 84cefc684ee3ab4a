"""Indexer fixtures: a runtime on the embedded chain (or a real Anvil), and a direct chain writer.

Writes go straight to the chain (signed by the deployer, or any funded key), not through the
outbox, so a test controls exactly which blocks hold which events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from crm_gateway.chain.membership import join_organization_typed_data, sign_join
from crm_gateway.config import ChainKind, Settings
from crm_gateway.indexer import ChainIndexer, ReadModel
from crm_gateway.runtime import Runtime, build_runtime
from crm_gateway.store.models import (
    ChainEvent,
    IndexerCursor,
    RmConsent,
    RmConsentChange,
    RmCustomer,
    RmCustomerHolder,
    RmMember,
    RmOrganization,
    RmPurpose,
    RmRoleHolding,
)
from tests.conftest import deploy_unless_embedded, free_port, make_settings

READ_MODEL_TABLES = (
    RmOrganization,
    RmMember,
    RmRoleHolding,
    RmCustomer,
    RmCustomerHolder,
    RmPurpose,
    RmConsent,
    RmConsentChange,
)


def role(name: str) -> bytes:
    return keccak(text=name)


@dataclass
class ChainWriter:
    """Sends contract calls signed by local keys and waits for their receipts."""

    runtime: Runtime
    deployer: LocalAccount
    counter: int = field(default=0)
    keys: dict[str, LocalAccount] = field(default_factory=dict)

    @property
    def w3(self) -> Web3:
        return self.runtime.chain.w3

    def send(self, call: ContractFunction, signer: LocalAccount | None = None) -> TxReceipt:
        signer = signer or self.deployer
        tx = call.build_transaction(
            {
                "from": signer.address,
                "nonce": self.w3.eth.get_transaction_count(signer.address, "pending"),
                "gas": 5_000_000,  # no estimate: eth-tester's is slow, and the limit is ample
            }
        )
        signed = signer.sign_transaction(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(signed.raw_transaction), timeout=20
        )
        assert receipt["status"] == 1, receipt
        return receipt

    def send_timed(self, call: ContractFunction) -> tuple[bytes, float]:
        """Send without waiting; returns the hash and the moment the node accepted it (with
        automine, the moment its block was mined)."""
        tx = call.build_transaction(
            {
                "from": self.deployer.address,
                "nonce": self.w3.eth.get_transaction_count(self.deployer.address, "pending"),
                "gas": 5_000_000,
            }
        )
        raw = self.deployer.sign_transaction(tx).raw_transaction
        tx_hash = self.w3.eth.send_raw_transaction(raw)
        return bytes(tx_hash), time.monotonic()

    def consortium(self) -> Any:
        return self.runtime.contracts["Consortium"]

    def registry(self) -> Any:
        return self.runtime.contracts["CustomerRegistry"]

    def grant(
        self, role_name: str, account: str | None = None, signer: LocalAccount | None = None
    ) -> TxReceipt:
        """`signer` (default: the deployer, ORG_ADMIN of organisation 1) grants the role; an
        account of no organisation joins with its own signature (a new key by default, or one
        `funded_account` made)."""
        return self.send(self.grant_call(role_name, account, signer), signer)

    def grant_call(
        self, role_name: str, account: str | None = None, signer: LocalAccount | None = None
    ) -> ContractFunction:
        """The grant `signer` sends: `grantRoleBySig` with the account's own JoinOrganization
        signature when it joins (its key must be one this writer made), else `grantRole`."""
        if account is None:
            account = self._remember(Account.create()).address
        functions = self.consortium().functions
        if int(functions.organizationOf(account).call()) != 0:
            return functions.grantRole(role(role_name), account)
        admin = signer or self.deployer
        org_id = int(functions.organizationOf(admin.address).call())
        deadline = int(time.time()) + 3600
        typed = join_organization_typed_data(
            chain_id=int(self.w3.eth.chain_id),
            consortium=self.consortium().address,
            account=account,
            org_id=org_id,
            role=role(role_name),
            nonce=int(functions.membershipNonces(account).call()),
            deadline=deadline,
        )
        signature = sign_join(self.keys[account], typed)
        return functions.grantRoleBySig(role(role_name), account, deadline, signature)

    def _remember(self, key: LocalAccount) -> LocalAccount:
        self.keys[key.address] = key
        return key

    def revoke(self, role_name: str, account: str) -> TxReceipt:
        return self.send(self.consortium().functions.revokeRole(role(role_name), account))

    def new_customer_id(self) -> bytes:
        self.counter += 1
        return keccak(text=f"customer-{id(self)}-{self.counter}")

    def register(self, customer_id: bytes | None = None) -> TxReceipt:
        customer_id = customer_id or self.new_customer_id()
        commitment = keccak(customer_id + b"commitment")
        return self.send(self.registry().functions.register(customer_id, commitment))

    def register_batch(self, count: int) -> TxReceipt:
        ids = [self.new_customer_id() for _ in range(count)]
        commitments = [keccak(i + b"c") for i in ids]
        return self.send(self.registry().functions.registerBatch(ids, commitments))

    def update(self, customer_id: bytes, version: int) -> TxReceipt:
        commitment = keccak(customer_id + version.to_bytes(8, "big"))
        return self.send(
            self.registry().functions.updateCommitment(customer_id, commitment, version)
        )

    def erase(self, customer_id: bytes) -> TxReceipt:
        return self.send(self.registry().functions.erase(customer_id))

    def funded_account(self) -> LocalAccount:
        account: LocalAccount = self._remember(Account.create())
        self.runtime.chain.dev_fund(account.address, 10**20)
        return account


def make_runtime(settings: Settings) -> Runtime:
    deploy_unless_embedded(settings)
    return build_runtime(settings)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    runtime = make_runtime(make_settings(tmp_path))
    yield runtime
    runtime.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on the embedded chain with its database on SQLite, then on PostgreSQL."""
    overrides: dict[str, Any] = {}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_schema_url")
    runtime = make_runtime(make_settings(tmp_path, **overrides))
    yield runtime
    runtime.close()


@pytest.fixture
def anvil_runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on a real Anvil started for this test (no state file interval games)."""
    from crm_gateway.chain.anvil import AnvilNode

    settings = make_settings(tmp_path, chain_kind=ChainKind.ANVIL, anvil_port=free_port())
    with AnvilNode(settings):
        runtime = make_runtime(settings)
        try:
            yield runtime
        finally:
            runtime.close()


def writer_for(runtime: Runtime) -> ChainWriter:
    deployer = runtime.keystore.unlock(str(runtime.contracts.record.deployer))
    writer = ChainWriter(runtime, deployer)
    # The deployer, ORG_ADMIN of the founding organisation, becomes its DATA_STEWARD too.
    writer.grant("DATA_STEWARD", deployer.address)
    return writer


@pytest.fixture
def writer(runtime: Runtime) -> ChainWriter:
    return writer_for(runtime)


@pytest.fixture
def new_indexer(runtime: Runtime) -> Callable[..., ChainIndexer]:
    def make(**kwargs: Any) -> ChainIndexer:
        return ChainIndexer(runtime.contracts, runtime.session_factory, **kwargs)

    return make


@pytest.fixture
def read_model(runtime: Runtime) -> ReadModel:
    return runtime.read_model


def chain_event_keys(runtime: Runtime) -> set[tuple[str, int]]:
    """(tx hash, log index) of every log of our contracts, straight from eth_getLogs."""
    addresses = [
        Web3.to_checksum_address(c.address) for c in runtime.contracts.record.contracts.values()
    ]
    logs = runtime.chain.w3.eth.get_logs(
        {"fromBlock": 0, "toBlock": "latest", "address": addresses}  # type: ignore[typeddict-item]
    )
    return {(Web3.to_hex(log["transactionHash"]), int(log["logIndex"])) for log in logs}


def stored_event_keys(runtime: Runtime) -> list[tuple[str, int]]:
    with runtime.session_factory() as session:
        return [tuple(r) for r in session.execute(select(ChainEvent.tx_hash, ChainEvent.log_index))]  # type: ignore[misc]


def cursor_of(runtime: Runtime) -> tuple[int, str] | None:
    with runtime.session_factory() as session:
        cursor = session.get(IndexerCursor, "chain")
        return None if cursor is None else (cursor.block_number, cursor.block_hash)


def snapshot(source: Runtime | sessionmaker[Session]) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model table's rows (sorted), the events without their ids, and the cursor."""
    factory = source.session_factory if isinstance(source, Runtime) else source
    result: dict[str, list[tuple[Any, ...]]] = {}
    with factory() as session:
        cursor = session.get(IndexerCursor, "chain")
        result["cursor"] = [] if cursor is None else [(cursor.block_number, cursor.block_hash)]
        for model in READ_MODEL_TABLES:
            columns = [c for c in model.__table__.columns]  # type: ignore[attr-defined]
            rows = session.execute(select(*columns)).all()
            result[model.__tablename__] = sorted(tuple(r) for r in rows)
        events = session.execute(
            select(
                ChainEvent.block_number,
                ChainEvent.block_hash,
                ChainEvent.tx_hash,
                ChainEvent.log_index,
                ChainEvent.contract,
                ChainEvent.event,
                ChainEvent.args,
                ChainEvent.block_timestamp,
            ).order_by(ChainEvent.block_number, ChainEvent.log_index)
        ).all()
        result["chain_events"] = [tuple(r) for r in events]
    return result


def assert_matches_chain(runtime: Runtime) -> None:
    """The projections agree with the contracts' own views (role holders, customers)."""
    consortium = runtime.contracts["Consortium"].functions
    registry = runtime.contracts["CustomerRegistry"].functions
    with runtime.session_factory() as session:
        holdings = session.scalars(select(RmRoleHolding)).all()
        for holding in holdings:
            assert consortium.hasRole(holding.role, holding.account).call()
            assert consortium.hasActiveRole(holding.role, holding.account).call() == holding.active
            assert consortium.organizationOf(holding.account).call() == (holding.org_id or 0)
        for name in ("CONSORTIUM_ADMIN", "ORG_ADMIN", "DATA_STEWARD", "AGENT", "AUDITOR"):
            on_chain = set(consortium.getRoleMembers(role(name)).call())
            projected = {h.account for h in holdings if h.role == "0x" + role(name).hex()}
            assert projected == on_chain, name
        for customer in session.scalars(select(RmCustomer)).all():
            status, _registered, wallet, holder_count = registry.customer(
                customer.customer_id
            ).call()
            assert status == {"active": 1, "erased": 2}[customer.status.value]
            assert (wallet if int(wallet, 16) else None) == customer.wallet
            holders = session.scalars(
                select(RmCustomerHolder).where(RmCustomerHolder.customer_id == customer.customer_id)
            ).all()
            assert len(holders) == holder_count
            for holder in holders:
                held = registry.holding(customer.customer_id, holder.org_id).call()
                assert ("0x" + held[0].hex(), held[1]) == (holder.commitment, holder.version)
