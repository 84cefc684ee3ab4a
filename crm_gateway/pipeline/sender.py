"""Take pending outbox rows in order, simulate, sign locally and submit them.

Any number of processes may run a sender on one database. Each sends only for the accounts whose
`signer:` lease it holds (`pipeline.leases`), so one account's nonces are allocated by one process
at a time, in the order of the outbox. And each operation is *claimed* in the transaction that
records its signed transaction: `UPDATE operations SET status = 'submitted' ... WHERE seq IN (...)
AND status = 'pending'`; if another process got there first (a lease that expired under a slow
holder), fewer rows change, the transaction is rolled back (its nonce was never used) and nothing
is broadcast. So an operation is sent exactly once whoever else runs.

The signed transaction is committed to the database *before* it is broadcast, so a crash at any
point leaves either nothing sent (the row is still pending and is taken again) or a signed
transaction on record that the watcher re-broadcasts. Re-broadcasting the same signed bytes can
never execute twice: the nonce admits exactly one of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from requests.exceptions import ConnectionError as RequestsConnectionError
from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from web3.exceptions import ContractLogicError, Web3Exception, Web3RPCError

from crm_gateway.chain.calls import call_data
from crm_gateway.chain.contracts import Contracts
from crm_gateway.chain.fees import fee_fields
from crm_gateway.chain.keystore import Keystore
from crm_gateway.pipeline.batching import batcher_for
from crm_gateway.pipeline.compensation import compensate_failed
from crm_gateway.pipeline.leases import Hold, Leases
from crm_gateway.pipeline.nonces import NonceAllocator
from crm_gateway.store.models import (
    ChainTransaction,
    ChainTransactionStatus,
    Operation,
    OperationStatus,
)

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RequestsConnectionError,
    ConnectionError,
    TimeoutError,
    OSError,
)


class _Taken(Exception):
    """Another process claimed (sent or settled) the operations meanwhile."""


def signer_lease(address: str) -> str:
    return f"signer:{address.lower()}"


class Sender:
    def __init__(
        self,
        *,
        contracts: Contracts,
        keystore: Keystore,
        session_factory: sessionmaker[Session],
        nonces: NonceAllocator,
        leases: Leases,
        gas_limit_multiplier: float,
        batch_size: int = 200,
        max_batch_items: int = 100,
        max_batch_gas: int = 12_000_000,
    ) -> None:
        self._contracts = contracts
        self._keystore = keystore
        self._sessions = session_factory
        self._nonces = nonces
        self._leases = leases
        self._multiplier = gas_limit_multiplier
        self._batch_size = batch_size
        self._max_items = max_batch_items
        self._max_gas = max_batch_gas
        self._access_lists = True

    def can_sign(self, address: str) -> bool:
        """Whether this gateway holds the key of `address` (looked up again in the keystore
        directory on a miss, so a key added while it runs is found)."""
        return self._keystore.get(address) is not None

    def run_once(self) -> int:
        """Submit the pending rows in order, batched where they can be; return how many."""
        with self._sessions() as session:
            pending = session.execute(
                select(Operation.seq, Operation.contract, Operation.function, Operation.sender)
                .where(Operation.status == OperationStatus.PENDING)
                .order_by(Operation.seq)
                .limit(self._batch_size)
            ).all()
        held: dict[str, bool] = {}
        for signer in dict.fromkeys(row.sender for row in pending):
            hold = self._leases.hold(signer_lease(signer))
            if hold is Hold.ACQUIRED:
                # Another process may have signed for this account since this one last did.
                self._nonces.forget(signer)
            held[signer] = hold is not Hold.NOT_HELD
        mine = [row for row in pending if held[row.sender]]
        handled = 0
        for group in self._groups(mine):
            if not self._submit_group(group):
                break  # the chain is unreachable: keep order, try again later
            handled += len(group)
        return handled

    def _groups(self, pending: Sequence[Any]) -> list[list[int]]:
        """Consecutive rows of one batchable kind and signer go together, up to the item cap."""
        groups: list[list[int]] = []
        previous: tuple[str, str, str] | None = None
        for row in pending:
            kind = (row.contract, row.function, row.sender)
            batchable = batcher_for(row.contract, row.function) is not None
            if batchable and kind == previous and len(groups[-1]) < self._max_items:
                groups[-1].append(row.seq)
            else:
                groups.append([row.seq])
            previous = kind if batchable else None
        return groups

    def _submit_group(self, sequence: list[int]) -> bool:
        if len(sequence) == 1:
            return self._submit(sequence[0])
        with self._sessions() as session:
            operations = [session.get(Operation, seq) for seq in sequence]
            live = [op for op in operations if op and op.status == OperationStatus.PENDING]
            if len(live) != len(sequence):
                return all(self._submit(seq) for seq in sequence)
            first = live[0]
            batcher = batcher_for(first.contract, first.function)
            account = self._keystore.get(first.sender)
            if batcher is None or account is None:
                return all(self._submit(seq) for seq in sequence)
            try:
                combined = batcher.combine([op.args for op in live])
                call = self._contracts[batcher.contract].functions[batcher.batch](*combined)
                data = _data(call, combined)
                estimate = self._estimate(call, data, account.address)
            except TRANSIENT_ERRORS as exc:
                log.warning("chain unreachable while simulating a batch: %s", exc)
                return False
            except Exception:
                # The batch as a whole would revert (the items themselves are skipped, not
                # reverted): send them one by one so each gets its own decoded error.
                estimate = None
            if estimate is None or estimate > self._max_gas:
                if estimate is not None and len(sequence) > 1:
                    half = len(sequence) // 2
                    return self._submit_group(sequence[:half]) and self._submit_group(
                        sequence[half:]
                    )
                return all(self._submit(seq) for seq in sequence)
            try:
                tx = self._record(session, live, call.address, data, estimate, account)
            except _Taken:
                return True
            if tx is None:
                return False
            broadcast(self._contracts.chain.w3, session, tx)
            session.commit()
            return True

    def _submit(self, seq: int) -> bool:
        with self._sessions() as session:
            operation = session.get(Operation, seq)
            if operation is None or operation.status != OperationStatus.PENDING:
                return True
            account = self._keystore.get(operation.sender)
            if account is None:
                _fail(session, operation, "SignerUnavailable", {"sender": operation.sender})
                session.commit()
                return True
            w3 = self._contracts.chain.w3
            try:
                call = self._contracts[operation.contract].functions[operation.function](
                    *operation.args
                )
                data = _data(call, operation.args)
                estimate = self._estimate(call, data, account.address)
            except TRANSIENT_ERRORS as exc:
                log.warning("chain unreachable while simulating %s: %s", operation.id, exc)
                return False
            except Exception as exc:
                revert = self._contracts.artifacts.error_decoder.decode_exception(exc)
                if revert is None:
                    if isinstance(exc, Web3Exception | ValueError | TypeError):
                        _fail(session, operation, "InvalidCall", {"reason": str(exc)[:500]})
                        session.commit()
                        return True
                    raise
                _fail(session, operation, revert.name, revert.args)
                session.commit()
                return True

            try:
                tx = self._record(session, [operation], call.address, data, estimate, account)
            except _Taken:
                return True
            if tx is None:
                return False
            broadcast(w3, session, tx)
            session.commit()
            return True

    def _estimate(self, call: Any, data: str, sender: str) -> int:
        """The gas the call needs; the transaction gets this times the gas limit multiplier.

        `eth_estimateGas` binary-searches, executing the call a dozen times: 130 ms for a batch
        of a hundred consent changes on Anvil, the sender's largest cost. So the call is run
        once to learn the gas it uses (`eth_createAccessList`, which Geth, Besu, GoQuorum and
        Anvil answer with `gasUsed`), and once more by `eth_call` with the gas limit it will be
        sent with: if that succeeds, so does the transaction in this state. Anything else (a
        revert, a refund or a contract wallet's gas allowance needing more gas along the way, a
        node without `eth_createAccessList`) goes to `eth_estimateGas` as before.
        """
        w3 = self._contracts.chain.w3
        tx: Any = {"from": sender, "to": call.address, "data": data}
        if self._access_lists:
            try:
                used = int(w3.eth.create_access_list(tx)["gasUsed"])
                checked: Any = {**tx, "gas": int(used * self._multiplier)}
                w3.eth.call(checked)
                return used
            except TRANSIENT_ERRORS:
                raise
            except ContractLogicError:
                pass  # estimate it below, which raises the revert the caller decodes
            except Web3RPCError as exc:
                # A revert comes back from eth_createAccessList as a plain JSON-RPC error (code
                # 3 with the custom error's data, not a ContractLogicError): that is this call
                # failing, not the node lacking the method, so only the latter turns it off.
                if _method_unavailable(exc):
                    self._turn_off_access_lists(exc)
            except Exception as exc:
                self._turn_off_access_lists(exc)
        return int(w3.eth.estimate_gas(tx))

    @property
    def uses_access_lists(self) -> bool:
        """Whether gas still comes from one `eth_createAccessList` run (see `_estimate`)."""
        return self._access_lists

    def _turn_off_access_lists(self, exc: BaseException) -> None:
        log.info("no gas from eth_createAccessList (%s); using eth_estimateGas", exc)
        self._access_lists = False

    def _record(
        self,
        session: Session,
        operations: Sequence[Operation],
        to: str,
        data: str,
        estimate: int,
        account: Any,
    ) -> ChainTransaction | None:
        """Sign, claim the operations and commit; on any failure before the commit the nonce
        taken is given back (re-read on next use), so the account's nonces keep no gap."""
        try:
            tx = self._sign(session, operations, to, data, estimate, account)
            if tx is not None:
                session.commit()
            return tx
        except _Taken:
            raise
        except BaseException:
            session.rollback()
            self._nonces.forget(account.address)
            raise

    def _sign(
        self,
        session: Session,
        operations: Sequence[Operation],
        to: str,
        data: str,
        estimate: int,
        account: Any,
    ) -> ChainTransaction | None:
        w3 = self._contracts.chain.w3
        for _attempt in range(3):
            nonce = self._nonces.allocate(session, account.address)
            params: dict[str, Any] = {
                "to": to,
                "data": data,
                "value": 0,
                "nonce": nonce,
                "gas": int(estimate * self._multiplier),
                "chainId": self._contracts.chain.chain_id,
                **fee_fields(w3),
            }
            signed = account.sign_transaction(params)
            tx = ChainTransaction(
                sender=account.address,
                nonce=nonce,
                tx_hash="0x" + bytes(signed.hash).hex(),
                raw_tx=bytes(signed.raw_transaction),
                status=ChainTransactionStatus.SENT,
                gas_limit=int(params["gas"]),
                broadcast_count=0,
            )
            try:
                with session.begin_nested():
                    session.add(tx)
                    session.flush()
            except IntegrityError:
                # Another process took this nonce; start again from what is recorded.
                self._nonces.forget(account.address)
                continue
            try:
                _claim(session, operations, tx)
            except _Taken:
                self._nonces.forget(account.address)  # the nonce it took was not used
                raise
            return tx
        log.error("could not allocate a free nonce for %s", account.address)
        return None


def _data(call: Any, args: Sequence[Any]) -> str:
    """The calldata of `call` (a web3 contract function bound to `args`, which resolved the
    function's ABI and checked the arguments), encoded once for both the estimate and the
    transaction, with eth-abi directly (`chain.calls.call_data`: a tenth of web3's time)."""
    try:
        return call_data(call.abi, args)
    except (ValueError, TypeError):
        return str(call._encode_transaction_data())


#: JSON-RPC error codes of a node that does not offer a method (EIP-1474: method not found,
#: method not supported).
_METHOD_UNAVAILABLE_CODES = frozenset({-32601, -32004})


def _method_unavailable(exc: Web3RPCError) -> bool:
    error = exc.rpc_response.get("error") if isinstance(exc.rpc_response, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code in _METHOD_UNAVAILABLE_CODES


def broadcast(w3: Any, session: Session, tx: ChainTransaction) -> bool:
    """Send a recorded transaction's signed bytes; a node that already has it is fine."""
    now = datetime.now(UTC)
    tx.last_sent_at = now
    if tx.first_sent_at is None:
        tx.first_sent_at = now
    tx.broadcast_count += 1
    try:
        w3.eth.send_raw_transaction(tx.raw_tx)
    except TRANSIENT_ERRORS as exc:
        log.warning("broadcast of %s failed, will retry: %s", tx.tx_hash, exc)
        return False
    except Exception as exc:
        # "already known", "nonce too low" and the like: the watcher decides from receipts.
        log.info("node did not take %s: %s", tx.tx_hash, exc)
        return False
    return True


def _claim(session: Session, operations: Sequence[Operation], tx: ChainTransaction) -> None:
    """Move `operations` from pending to submitted in `tx`, all of them or none (`_Taken`, with
    the transaction rolled back: the signed transaction is not recorded, its nonce not used)."""
    sequence = [operation.seq for operation in operations]
    claimed = _rows(
        session.execute(
            update(Operation)
            .where(Operation.seq.in_(sequence), Operation.status == OperationStatus.PENDING)
            .values(
                status=OperationStatus.SUBMITTED, chain_tx_id=tx.id, updated_at=datetime.now(UTC)
            )
            .execution_options(synchronize_session=False)
        )
    )
    if claimed != len(sequence):
        log.info("operations %s were claimed by another process", sequence)
        session.rollback()
        raise _Taken
    for operation in operations:
        session.refresh(operation)


def _fail(session: Session, operation: Operation, name: str, args: dict[str, Any]) -> None:
    """Settle a pending operation as failed (unless another process took it meanwhile), and
    undo its off-chain part."""
    failed = _rows(
        session.execute(
            update(Operation)
            .where(Operation.seq == operation.seq, Operation.status == OperationStatus.PENDING)
            .values(
                status=OperationStatus.FAILED,
                error_name=name,
                error_args=args,
                updated_at=datetime.now(UTC),
            )
            .execution_options(synchronize_session=False)
        )
    )
    if failed == 1:
        session.refresh(operation)
        compensate_failed(session, operation)


def _rows(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
