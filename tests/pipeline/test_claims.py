"""Two senders on one database (two processes of one organisation) send each operation once.

Each `Sender` here stands for another process: its own nonce allocator and its own leases (its
own holder name), on the same database and chain. Counted from the chain: the signer's nonce
moves by exactly the number of operations and every grant's `RoleGranted` is there once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import func, select

from crm_gateway.config import Settings
from crm_gateway.pipeline.leases import Hold, Leases
from crm_gateway.pipeline.nonces import NonceAllocator
from crm_gateway.pipeline.outbox import ChainWrite
from crm_gateway.pipeline.sender import Sender, signer_lease
from crm_gateway.runtime import Runtime, build_runtime
from crm_gateway.services.access import AccessService, Role
from crm_gateway.services.operations import OperationService
from crm_gateway.store.models import ChainTransaction, Operation, OperationStatus
from tests.conftest import CHAIN_VARIANTS

ONE_CHAIN_TWO_DATABASES = CHAIN_VARIANTS[:2]  # embedded chain, SQLite and PostgreSQL
OPERATIONS = 16


@pytest.fixture
def runtime(chain_settings: Settings) -> Iterator[Runtime]:
    built = build_runtime(chain_settings)
    yield built
    built.close()


class CountingNonces(NonceAllocator):
    """A process's nonce allocator that remembers the nonces it handed out."""

    def __init__(self, w3: Any) -> None:
        super().__init__(w3)
        self.handed_out: list[int] = []

    def allocate(self, session: Any, sender: str) -> int:
        nonce = super().allocate(session, sender)
        self.handed_out.append(nonce)
        return nonce


def _process(runtime: Runtime, *, lease_seconds: float) -> Sender:
    """A sender as another process of the same organisation would have it."""
    return Sender(
        contracts=runtime.contracts,
        keystore=runtime.keystore,
        session_factory=runtime.session_factory,
        nonces=CountingNonces(runtime.chain.w3),
        leases=Leases(runtime.session_factory, seconds=lease_seconds),
        gas_limit_multiplier=runtime.settings.gas_limit_multiplier,
    )


def _queue_grants(runtime: Runtime, count: int) -> list[tuple[str, str]]:
    """`count` AGENT grants by the admin, each to a new account of the gateway's keystore (it
    signs its own join, once); (operation id, account) of each."""
    access = AccessService(runtime.contracts, keystore=runtime.keystore)
    service = OperationService(runtime.session_factory, runtime.pipeline)
    admin = str(runtime.contracts.record.deployer)
    queued = []
    for _ in range(count):
        account = runtime.keystore.add(Account.create()).address
        write: ChainWrite = access.grant(admin, Role.AGENT, account)
        view, _ = service.submit(write, api_key_id=None, idempotency_key=None, payload=write.args)
        queued.append((view.id, account))
    return queued


def _race(senders: list[Sender], runtime: Runtime) -> None:
    """Run every sender in its own thread until nothing is pending."""
    start = threading.Barrier(len(senders))
    errors: list[BaseException] = []

    def pending() -> int:
        with runtime.session_factory() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(Operation)
                    .where(Operation.status == OperationStatus.PENDING)
                )
                or 0
            )

    def run(sender: Sender) -> None:
        try:
            start.wait()
            for _ in range(2000):
                sender.run_once()
                if not pending():
                    return
        except BaseException as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(sender,)) for sender in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert not pending()


def _settle_all(runtime: Runtime, ids: list[str]) -> list[Any]:
    service = OperationService(runtime.session_factory, runtime.pipeline)
    assert runtime.pipeline.drain(
        until=lambda: all(service.get_internal(i).settled for i in ids), timeout=60
    )
    return [service.get_internal(i) for i in ids]


def _assert_exactly_once(
    runtime: Runtime, queued: list[tuple[str, str]], nonce_before: int
) -> None:
    admin = str(runtime.contracts.record.deployer)
    settled = _settle_all(runtime, [operation_id for operation_id, _ in queued])
    assert [view.status for view in settled] == ["confirmed"] * len(queued), [
        view.error for view in settled if view.status != "confirmed"
    ]
    # From the chain: one transaction per operation, each grant applied once.
    assert runtime.chain.w3.eth.get_transaction_count(admin) - nonce_before == len(queued)
    granted = runtime.contracts["Consortium"].events.RoleGranted().get_logs(from_block=0)
    accounts = [str(log["args"]["account"]) for log in granted]
    for _operation_id, account in queued:
        assert accounts.count(account) == 1
    with runtime.session_factory() as session:
        recorded = session.scalar(select(func.count()).select_from(ChainTransaction))
        assert recorded == len(queued)
        assert len({view.tx_hash for view in settled}) == len(queued)


@pytest.mark.parametrize("chain_settings", ONE_CHAIN_TWO_DATABASES, indirect=True)
def test_two_senders_whose_leases_both_hold_never_send_an_operation_twice(
    runtime: Runtime,
) -> None:
    # Leases that expire at once: both senders believe they may sign for the admin, as when a
    # lease runs out under a slow holder. The claim of each operation must still decide.
    admin = str(runtime.contracts.record.deployer)
    nonce_before = runtime.chain.w3.eth.get_transaction_count(admin)
    queued = _queue_grants(runtime, OPERATIONS)
    _race([_process(runtime, lease_seconds=1e-6) for _ in range(2)], runtime)
    _assert_exactly_once(runtime, queued, nonce_before)


@pytest.mark.parametrize("chain_settings", ONE_CHAIN_TWO_DATABASES, indirect=True)
def test_two_senders_take_turns_per_signer_and_keep_its_order(runtime: Runtime) -> None:
    admin = str(runtime.contracts.record.deployer)
    nonce_before = runtime.chain.w3.eth.get_transaction_count(admin)
    queued = _queue_grants(runtime, OPERATIONS)
    senders = [_process(runtime, lease_seconds=30) for _ in range(2)]
    _race(senders, runtime)
    _assert_exactly_once(runtime, queued, nonce_before)
    settled = _settle_all(runtime, [operation_id for operation_id, _ in queued])
    # One account, one sender at a time: nonces follow the outbox's order, without a gap, and
    # only the lease's holder handed any out (no two processes signing for it at once).
    assert [view.nonce for view in settled] == list(range(nonce_before, nonce_before + OPERATIONS))
    counts = sorted(len(sender._nonces.handed_out) for sender in senders)  # type: ignore[attr-defined]
    assert counts == [0, OPERATIONS]


@pytest.mark.parametrize("chain_settings", ONE_CHAIN_TWO_DATABASES[:1], indirect=True)
def test_a_lease_passes_to_another_process_only_when_it_expires_or_is_released(
    runtime: Runtime,
) -> None:
    first = Leases(runtime.session_factory, seconds=0.3)
    second = Leases(runtime.session_factory, seconds=0.3)
    name = signer_lease(str(runtime.contracts.record.deployer))
    assert first.hold(name) is Hold.ACQUIRED
    assert second.hold(name) is Hold.NOT_HELD
    assert first.hold(name) is Hold.RENEWED
    time.sleep(0.35)  # the first holder died: its lease runs out
    assert second.hold(name) is Hold.ACQUIRED
    assert first.hold(name) is Hold.NOT_HELD
    second.release_all()
    assert first.hold(name) is Hold.ACQUIRED
