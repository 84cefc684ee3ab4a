"""The write pipeline on both chains: order, nonces, idempotency, and writes a node lost."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from eth_account import Account
from eth_keys.backends import NativeECCBackend
from sqlalchemy import select

from crm_gateway.chain.keystore import KeystoreError
from crm_gateway.config import Settings
from crm_gateway.pipeline import sender as sender_module
from crm_gateway.pipeline.outbox import ChainWrite
from crm_gateway.runtime import Runtime, build_runtime
from crm_gateway.services.access import AccessService, Role
from crm_gateway.services.operations import OperationService, OperationView
from crm_gateway.store.models import ChainTransaction, ChainTransactionStatus
from tests.conftest import deploy_unless_embedded


def _admin(runtime: Runtime) -> str:
    return str(runtime.contracts.record.deployer)


def _grant(runtime: Runtime, role: Role = Role.AGENT, account: str | None = None) -> ChainWrite:
    """A grant to a new account of this gateway's keystore (it signs its own join)."""
    account = account or runtime.keystore.add(Account.create()).address
    return AccessService(runtime.contracts, keystore=runtime.keystore).grant(
        _admin(runtime), role, account
    )


def _submit(runtime: Runtime, write: ChainWrite, key: str | None = None) -> OperationView:
    service = OperationService(runtime.session_factory, runtime.pipeline)
    view, _ = service.submit(write, api_key_id=None, idempotency_key=key, payload=write.args)
    return view


def _settle(runtime: Runtime, *ids: str, timeout: float = 30) -> list[OperationView]:
    service = OperationService(runtime.session_factory, runtime.pipeline)
    assert runtime.pipeline.drain(
        until=lambda: all(service.get_internal(i).settled for i in ids), timeout=timeout
    ), [service.get_internal(i) for i in ids]
    return [service.get_internal(i) for i in ids]


def _role_granted_events(runtime: Runtime, account: str) -> list[Any]:
    consortium = runtime.contracts["Consortium"]
    logs = consortium.events.RoleGranted().get_logs(
        from_block=0, argument_filters={"account": account}
    )
    return list(logs)


def test_writes_confirm_in_order_with_consecutive_nonces(runtime: Runtime) -> None:
    views = [_submit(runtime, _grant(runtime)) for _ in range(8)]
    settled = _settle(runtime, *(v.id for v in views))
    assert [v.status for v in settled] == ["confirmed"] * 8
    nonces = [v.nonce for v in settled]
    assert nonces == list(range(nonces[0], nonces[0] + 8))
    blocks = [v.block_number for v in settled]
    assert blocks == sorted(blocks)


def test_a_refused_write_fails_with_its_custom_error_and_uses_no_nonce(runtime: Runtime) -> None:
    admin = _admin(runtime)
    refused = _submit(
        runtime,
        ChainWrite(
            "roles.revoke",
            "Consortium",
            "revokeRole",
            ["0x" + Role.ORG_ADMIN.role_id.hex(), admin],
            admin,
        ),
    )
    after = _submit(runtime, _grant(runtime))
    failed, confirmed = _settle(runtime, refused.id, after.id)
    assert failed.status == "failed"
    assert failed.error == {"name": "LastOrganizationAdmin", "args": {"orgId": 1}}
    assert failed.tx_hash is None
    assert confirmed.status == "confirmed"
    if runtime.settings.chain_kind != "embedded":
        # The revert came back from eth_createAccessList as a JSON-RPC error (code 3): it is not
        # a node without the method, so later sends keep the one-run gas path.
        assert runtime.pipeline.sender.uses_access_lists


def test_an_idempotency_key_makes_one_chain_write(runtime: Runtime) -> None:
    write = _grant(runtime)
    first = _submit(runtime, write, key="same-request")
    second = _submit(runtime, write, key="same-request")
    assert first.id == second.id
    _settle(runtime, first.id)
    assert len(_role_granted_events(runtime, write.args[1])) == 1


def test_a_crash_between_signing_and_broadcast_is_recovered_after_restart(
    chain_settings: Settings, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Crash(BaseException):
        """Stands for the process dying: nothing after this point runs."""

    def crash(*_args: Any) -> bool:
        raise Crash

    write = _grant(runtime)
    view = _submit(runtime, write)
    monkeypatch.setattr(sender_module, "broadcast", crash)
    with pytest.raises(Crash):
        runtime.pipeline.sender.run_once()
    monkeypatch.undo()
    with runtime.session_factory() as session:
        tx = session.scalars(select(ChainTransaction)).one()
        assert tx.status == ChainTransactionStatus.SENT
        assert tx.broadcast_count == 0

    restarted = build_runtime(chain_settings, chain=runtime.chain)
    [settled] = _settle(restarted, view.id)
    assert settled.status == "confirmed"
    assert len(_role_granted_events(restarted, write.args[1])) == 1


def test_a_transaction_recorded_but_not_yet_broadcast_is_left_to_the_sender_for_a_while(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sender commits the signed transaction before broadcasting it. The watcher must not
    # judge it meanwhile: a node may already count the nonce of a transaction it just mined
    # before it serves the receipt, which made a mined batch look "nonce consumed" under load.
    class Crash(BaseException):
        pass

    def crash(*_args: Any) -> bool:
        raise Crash

    view = _submit(runtime, _grant(runtime))
    monkeypatch.setattr(sender_module, "broadcast", crash)
    with pytest.raises(Crash):
        runtime.pipeline.sender.run_once()
    monkeypatch.undo()
    runtime.pipeline.watcher.run_once()
    with runtime.session_factory() as session:
        tx = session.scalars(select(ChainTransaction)).one()
        assert (tx.status, tx.broadcast_count) == (ChainTransactionStatus.SENT, 0)
    # After RESUBMIT_AFTER_SECONDS it is the watcher's to send (the sender may have died).
    [settled] = _settle(runtime, view.id)
    assert settled.status == "confirmed"


def test_a_transaction_the_node_forgot_is_sent_again(
    chain_settings: Settings, tmp_path: Any
) -> None:
    # The node loses its newest blocks (as Anvil does when killed before its next state dump);
    # the watcher notices the receipt is gone and broadcasts the same signed bytes again.
    slow_finality = chain_settings.model_copy(update={"finality_seconds": 60.0})
    deploy_unless_embedded(slow_finality)
    runtime = build_runtime(slow_finality)
    try:
        w3 = runtime.chain.w3
        snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
        write = _grant(runtime)
        [first] = _settle(runtime, _submit(runtime, write).id)
        assert first.status == "confirmed"
        w3.provider.make_request("evm_revert", [snapshot])
        assert _role_granted_events(runtime, write.args[1]) == []

        runtime.pipeline.watcher.run_once()  # notices the loss and re-broadcasts
        [again] = _settle(runtime, first.id)
        assert again.status == "confirmed"
        assert again.tx_hash == first.tx_hash
        assert len(_role_granted_events(runtime, write.args[1])) == 1
    finally:
        runtime.close()


def test_two_processes_sharing_a_database_never_reuse_a_nonce(
    chain_settings: Settings, runtime: Runtime
) -> None:
    other = build_runtime(chain_settings, chain=runtime.chain)
    views = [_submit(runtime, _grant(runtime)) for _ in range(12)]
    threads = [
        threading.Thread(target=lambda r=r: [r.pipeline.sender.run_once() for _ in range(5)])
        for r in (runtime, other)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    settled = _settle(runtime, *(v.id for v in views))
    assert [v.status for v in settled] == ["confirmed"] * 12, [v.error for v in settled]
    assert len({v.nonce for v in settled}) == 12


def test_startup_refuses_the_slow_pure_python_signer(
    chain_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("crm_gateway.chain.keystore.get_backend", lambda: NativeECCBackend())
    with pytest.raises(KeystoreError, match="coincurve"):
        build_runtime(chain_settings)
