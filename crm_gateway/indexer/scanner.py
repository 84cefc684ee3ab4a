"""The indexer: contract events from the chain into `chain_events` and the read-model projections.

Each `ChainIndexer.step` does one of three things, and each in ONE database transaction:

* **scan** the next bounded block range (at most `max_block_range` blocks, cut at a block
  boundary when it holds more than `max_events_per_range` events) with one `eth_getLogs` over the
  addresses of every deployed contract: store the decoded events that are not stored yet (unique
  by transaction hash and log index), apply them to the projections in chain order, record the
  hashes of the range's last block and of every block with events, prune the hashes older than
  `reorg_depth` blocks, and move the cursor to the range's last block;
* **rewind** when the cursor's block hash is no longer the chain's (a reorg, or blocks that Anvil
  lost on a SIGKILL): find the newest recorded block still on the chain (a binary search, since
  a matching hash implies matching ancestors), delete the events above it and rebuild the
  projections they touched from the events that remain; with no common ancestor recorded (a
  reset development chain), drop the read model and start again from the deployment block. The
  same rewind runs when the deployment record names a contract the read model does not cover yet
  and that was deployed at or below the cursor, so its past events are read too;
* nothing, when the cursor is at the chain head (one `eth_getBlockByNumber("latest")`).

The cursor moves by compare-and-set (`UPDATE ... WHERE block_number = old AND block_hash = old`),
so two indexers on one database (the gateway's and `crm-chaincode index run`) never both apply a
range: the second one's transaction fails with `IndexerConflict` and is rolled back. A crash at
any point leaves the previous transaction's state: nothing is lost or applied twice.

Range consistency: the hash of the range's last block is read before and after `eth_getLogs`,
and the cursor's hash after it; if either changed the step is dropped ("raced") and retried.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from web3 import HTTPProvider, Web3
from web3.exceptions import BlockNotFound
from web3.types import FilterParams, LogReceipt, RPCEndpoint

from crm_gateway.chain.contracts import Contracts
from crm_gateway.indexer.events import IndexedEvent
from crm_gateway.indexer.projections import ProjectionRegistry, default_registry
from crm_gateway.indexer.projections.base import PartitionedProjection, table
from crm_gateway.store.db import session_scope
from crm_gateway.store.models import (
    ChainEvent,
    IndexedBlock,
    IndexedContract,
    IndexerCursor,
    utcnow,
)

log = logging.getLogger(__name__)

CURSOR_NAME = "chain"
DEFAULT_MAX_BLOCK_RANGE = 500
DEFAULT_REORG_DEPTH = 1000
DEFAULT_MAX_EVENTS_PER_RANGE = 5000
_REBUILD_PAGE = 2000
_INSERT_EVENT = insert(table(ChainEvent))  # Core, not ORM: a tenth of the cost per row

StepKind = Literal["idle", "scanned", "rewound", "reset", "raced"]


class IndexerConflict(RuntimeError):
    """Another indexer moved the cursor first; this step was rolled back."""


class _Raced(Exception):
    """The chain changed while a step read it; the step is dropped and retried."""


def apply_event(registry: ProjectionRegistry, session: Session, event: IndexedEvent) -> None:
    """Apply one newly stored event to the projections (a module-level hook: tests replace it to
    simulate a crash in the middle of a range)."""
    registry.apply(session, event)


@dataclass(frozen=True)
class StepResult:
    """What one step did: the cursor before and after, the events stored and removed."""

    kind: StepKind
    head: int | None = None
    from_block: int | None = None
    to_block: int | None = None
    events: int = 0
    removed: int = 0
    reason: str = ""

    @property
    def busy(self) -> bool:
        """True when the step changed the read model (so another may follow right away)."""
        return self.kind in {"scanned", "rewound", "reset"}


@dataclass(frozen=True)
class IndexedContractInfo:
    name: str
    address: str
    from_block: int
    covered: bool


@dataclass(frozen=True)
class IndexerStatus:
    """The cursor against the chain, for `crm-chaincode index status` and health checks."""

    cursor_block: int | None
    cursor_hash: str | None
    cursor_updated_at: datetime | None
    head: int
    start_block: int | None
    events: int
    on_chain: bool | None  # is the cursor's block hash still the chain's? (None: no cursor)
    contracts: list[IndexedContractInfo] = field(default_factory=list)

    @property
    def lag(self) -> int | None:
        if self.start_block is None:
            return None
        cursor = self.cursor_block if self.cursor_block is not None else self.start_block - 1
        return max(0, self.head - cursor)


def _every_event(event: IndexedEvent) -> bool:
    return True


def _in_partitions(
    projection: PartitionedProjection, keys: set[str]
) -> Callable[[IndexedEvent], bool]:
    """Whether an event belongs to one of these partitions of `projection`."""
    return lambda event: projection.key_of(event) in keys


def _hex(value: Any) -> str:
    return Web3.to_hex(value).lower() if not isinstance(value, str) else value.lower()


class ChainIndexer:
    """Scans the chain for our contracts' events and keeps the read model current; see module."""

    def __init__(
        self,
        contracts: Contracts,
        session_factory: sessionmaker[Session],
        *,
        registry: ProjectionRegistry | None = None,
        max_block_range: int = DEFAULT_MAX_BLOCK_RANGE,
        reorg_depth: int = DEFAULT_REORG_DEPTH,
        max_events_per_range: int = DEFAULT_MAX_EVENTS_PER_RANGE,
    ) -> None:
        if max_block_range < 1 or reorg_depth < 1 or max_events_per_range < 1:
            raise ValueError("max_block_range, reorg_depth and max_events_per_range must be >= 1")
        self.contracts = contracts
        self.session_factory = session_factory
        self.registry = registry or default_registry()
        self.max_block_range = max_block_range
        self.reorg_depth = reorg_depth
        self.max_events_per_range = max_events_per_range
        self._as_of: int | None = None
        self._changed = threading.Condition()

    @property
    def _w3(self) -> Web3:
        return self.contracts.chain.w3

    # --- what to index ----------------------------------------------------------------------

    def targets(self) -> dict[str, tuple[str, int]]:
        """Checksum address -> (contract name, deployment block) for every deployed contract."""
        return {
            Web3.to_checksum_address(c.address): (name, c.block_number)
            for name, c in sorted(self.contracts.record.contracts.items())
        }

    def start_block(self) -> int | None:
        """The lowest deployment block in the record (None when nothing is deployed)."""
        blocks = [block for _name, block in self.targets().values()]
        return min(blocks) if blocks else None

    # --- progress for waiters ---------------------------------------------------------------

    @property
    def as_of(self) -> int | None:
        """The block this indexer last brought the read model to (None before its first step)."""
        return self._as_of

    def _set_as_of(self, block: int | None) -> None:
        with self._changed:
            self._as_of = block
            self._changed.notify_all()

    def follow(self) -> int | None:
        """Take the block the read model is at from the database's cursor, where another
        process indexes (this one is not the organisation's indexer); that block."""
        with self.session_factory() as session:
            cursor = session.get(IndexerCursor, CURSOR_NAME)
            block = cursor.block_number if cursor is not None else None
        if block is not None and block != self._as_of:
            self._set_as_of(block)
        return block

    def wait_for_block(self, block: int, timeout: float) -> bool:
        """Block until this indexer has indexed `block` (True), or `timeout` seconds (False)."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._as_of is not None and self._as_of >= block, timeout
            )

    # --- chain reads ------------------------------------------------------------------------

    def _hash_at(self, number: int) -> str | None:
        if number < 0:
            return None
        try:
            return _hex(self._w3.eth.get_block(number)["hash"])
        except BlockNotFound:
            return None

    # --- the step ---------------------------------------------------------------------------

    def step(self) -> StepResult:
        """Scan one range, or rewind after a reorg, or do nothing at the head; see the module."""
        try:
            return self._step()
        except _Raced as exc:
            log.debug("indexer step raced the chain: %s", exc)
            return StepResult("raced", reason=str(exc))
        except IndexerConflict as exc:
            log.info("indexer step dropped: %s", exc)
            return StepResult("raced", reason=str(exc))

    def run_to_head(
        self, on_step: Callable[[StepResult], None] | None = None, *, max_steps: int | None = None
    ) -> StepResult:
        """Step until the cursor is at the chain head; returns the last (idle) step."""
        steps = 0
        while True:
            result = self.step()
            if on_step is not None:
                on_step(result)
            steps += 1
            if result.kind == "idle" or (max_steps is not None and steps >= max_steps):
                return result

    def _step(self) -> StepResult:
        targets = self.targets()
        if not targets:
            return StepResult("idle", reason="nothing is deployed")
        latest = self._w3.eth.get_block("latest")
        head, head_hash = int(latest["number"]), _hex(latest["hash"])
        with self.session_factory() as session:
            cursor = session.get(IndexerCursor, CURSOR_NAME)
            position = (cursor.block_number, cursor.block_hash) if cursor is not None else None
            known = set(session.scalars(select(IndexedContract.address)))
        if position is None:
            base = min(block for _name, block in targets.values()) - 1
            base_hash = self._hash_at(base)
            if base_hash is None:
                return StepResult("idle", head=head, reason="the deployment block is not mined")
        else:
            base, base_hash = position
            at_head = base == head and base_hash == head_hash  # on the chain, nothing to read
            if not at_head and self._hash_at(base) != base_hash:
                return self._recover(position, head)
            new = [block for address, (_n, block) in targets.items() if address not in known]
            if new and min(new) <= base:
                return self._rewind(position, min(new) - 1, head, reason="new contract")
        if base >= head:
            self._set_as_of(base)
            return StepResult("idle", head=head, from_block=base, to_block=base)
        return self._scan(position, base, base_hash, head, targets, known)

    def _scan(
        self,
        position: tuple[int, str] | None,
        base: int,
        base_hash: str,
        head: int,
        targets: dict[str, tuple[str, int]],
        known: set[str],
    ) -> StepResult:
        first = base + 1
        last = min(head, base + self.max_block_range)
        last_hash = self._hash_at(last)
        if last_hash is None:
            raise _Raced(f"block {last} is gone")
        params: FilterParams = {
            "fromBlock": first,
            "toBlock": last,
            "address": list(targets),  # type: ignore[typeddict-item]
        }
        logs = self._get_logs(params)
        if self._hash_at(last) != last_hash or self._hash_at(base) != base_hash:
            raise _Raced(f"the chain changed while blocks {first}..{last} were read")
        events = self._decode(logs, last, last_hash)
        if len(events) > self.max_events_per_range:
            cut = self._cut(events)
            if cut < last:
                events = [e for e in events if e.block_number <= cut]
                last, last_hash = cut, events[-1].block_hash

        with session_scope(self.session_factory) as session:
            self._move_cursor(session, position, last, last_hash)
            for address, (name, block) in targets.items():
                if address not in known:
                    session.execute(
                        insert(IndexedContract).values(address=address, name=name, from_block=block)
                    )
            stored = {
                (tx_hash, log_index)
                for tx_hash, log_index in session.execute(
                    select(ChainEvent.tx_hash, ChainEvent.log_index).where(
                        ChainEvent.block_number.between(first, last)
                    )
                )
            }
            fresh = [e for e in events if e.identity not in stored]
            if fresh:
                session.connection().execute(_INSERT_EVENT, [e.row() for e in fresh])
            for event in fresh:
                apply_event(self.registry, session, event)
            blocks = {last: last_hash} | {e.block_number: e.block_hash for e in fresh}
            self._record_blocks(session, blocks)
            session.execute(
                delete(IndexedBlock).where(IndexedBlock.number < last - self.reorg_depth)
            )
        self._set_as_of(last)
        return StepResult("scanned", head=head, from_block=first, to_block=last, events=len(fresh))

    def _cut(self, events: Sequence[IndexedEvent]) -> int:
        """The last block of the longest run of whole blocks holding at most
        `max_events_per_range` events (at least the first block, however many it holds)."""
        kept = 0
        cut = events[0].block_number
        for block, group in itertools.groupby(events, key=lambda e: e.block_number):
            count = sum(1 for _ in group)
            if kept and kept + count > self.max_events_per_range:
                break
            kept += count
            cut = block
        return cut

    def _get_logs(self, params: FilterParams) -> Sequence[LogReceipt | dict[str, Any]]:
        """`eth_getLogs`; over HTTP the node's JSON as it is (numbers turned into integers):
        web3's formatting of each log cost more than decoding it."""
        provider = self._w3.provider
        if isinstance(provider, HTTPProvider):
            request = {
                "fromBlock": hex(int(params["fromBlock"])),
                "toBlock": hex(int(params["toBlock"])),
                "address": params["address"],
            }
            answer: Any = provider.make_request(RPCEndpoint("eth_getLogs"), [request])
            if "error" not in answer and isinstance(answer.get("result"), list):
                return [
                    {
                        **entry,
                        "blockNumber": int(entry["blockNumber"], 16),
                        "logIndex": int(entry["logIndex"], 16),
                    }
                    for entry in answer["result"]
                ]
        return self._w3.eth.get_logs(params)

    def _decode(
        self, logs: Sequence[LogReceipt | dict[str, Any]], last: int, last_hash: str
    ) -> list[IndexedEvent]:
        timestamps: dict[str, int] = {}
        events: list[IndexedEvent] = []
        for entry in logs:
            if entry.get("removed"):
                continue
            decoded = self.contracts.decode_log(entry)
            if decoded is None:
                continue
            block_number = int(entry["blockNumber"])
            block_hash = _hex(entry["blockHash"])
            if block_number == last and block_hash != last_hash:
                raise _Raced(f"a log of block {last} names another block hash")
            if block_hash not in timestamps:
                raw: Any = entry.get("blockTimestamp")  # Anvil includes it; eth-tester does not
                if raw is None:
                    raw = self._w3.eth.get_block(block_hash)["timestamp"]  # type: ignore[arg-type]
                timestamps[block_hash] = int(raw, 16) if isinstance(raw, str) else int(raw)
            events.append(
                IndexedEvent(
                    block_number=block_number,
                    block_hash=block_hash,
                    tx_hash=_hex(entry["transactionHash"]),
                    log_index=int(entry["logIndex"]),
                    contract=decoded["contract"],
                    event=decoded["event"],
                    args=decoded["args"],
                    block_timestamp=datetime.fromtimestamp(timestamps[block_hash], UTC),
                )
            )
        events.sort(key=lambda e: e.position)
        return events

    # --- cursor and block bookkeeping -------------------------------------------------------

    @staticmethod
    def _move_cursor(
        session: Session, position: tuple[int, str] | None, number: int, block_hash: str
    ) -> None:
        """Compare-and-set the cursor from `position` (None: no cursor yet) to `number`."""
        if position is None:
            try:
                with session.begin_nested():
                    session.execute(
                        insert(IndexerCursor).values(
                            name=CURSOR_NAME,
                            block_number=number,
                            block_hash=block_hash,
                            updated_at=utcnow(),
                        )
                    )
            except IntegrityError:
                raise IndexerConflict("another indexer created the cursor first") from None
            return
        moved = session.execute(
            update(IndexerCursor)
            .where(
                IndexerCursor.name == CURSOR_NAME,
                IndexerCursor.block_number == position[0],
                IndexerCursor.block_hash == position[1],
            )
            .values(block_number=number, block_hash=block_hash, updated_at=utcnow())
        )
        if getattr(moved, "rowcount", 0) != 1:
            raise IndexerConflict(f"the cursor is no longer at block {position[0]}")

    @staticmethod
    def _record_blocks(session: Session, blocks: dict[int, str]) -> None:
        numbers = sorted(blocks)
        session.execute(delete(IndexedBlock).where(IndexedBlock.number.in_(numbers)))
        session.execute(insert(IndexedBlock), [{"number": n, "hash": blocks[n]} for n in numbers])

    # --- reorgs -----------------------------------------------------------------------------

    def _recover(self, position: tuple[int, str], head: int) -> StepResult:
        """The cursor's block left the chain: rewind to the newest recorded block still on it."""
        with self.session_factory() as session:
            recorded = [
                (number, block_hash)
                for number, block_hash in session.execute(
                    select(IndexedBlock.number, IndexedBlock.hash)
                    .where(IndexedBlock.number <= position[0])
                    .order_by(IndexedBlock.number)
                )
            ]
        low, high, found = 0, len(recorded) - 1, None
        while low <= high:  # matching hashes are a prefix of the recorded blocks
            middle = (low + high) // 2
            number, block_hash = recorded[middle]
            if self._hash_at(number) == block_hash:
                found, low = recorded[middle], middle + 1
            else:
                high = middle - 1
        if found is None:
            return self._reset(position, head)
        log.warning(
            "reorg: block %d is no longer %s; rewinding to block %d",
            position[0],
            position[1],
            found[0],
        )
        return self._rewind(position, found[0], head, reason="reorg", target_hash=found[1])

    def _rewind(
        self,
        position: tuple[int, str],
        target: int,
        head: int,
        *,
        reason: str,
        target_hash: str | None = None,
    ) -> StepResult:
        """Move the cursor back to `target`: drop the events above it, rebuild projections."""
        target_hash = target_hash or self._hash_at(target)
        if target_hash is None:
            raise _Raced(f"block {target} is gone")
        with session_scope(self.session_factory) as session:
            self._move_cursor(session, position, target, target_hash)
            removed = [
                IndexedEvent.from_row(row)
                for row in session.scalars(
                    select(ChainEvent)
                    .where(ChainEvent.block_number > target)
                    .order_by(ChainEvent.block_number, ChainEvent.log_index)
                )
            ]
            session.execute(delete(ChainEvent).where(ChainEvent.block_number > target))
            session.execute(delete(IndexedBlock).where(IndexedBlock.number > target))
            session.execute(delete(IndexedContract).where(IndexedContract.from_block > target))
            self._record_blocks(session, {target: target_hash})
            self.rebuild_projections(session, removed)
        self._set_as_of(target)
        return StepResult(
            "rewound",
            head=head,
            from_block=position[0],
            to_block=target,
            removed=len(removed),
            reason=reason,
        )

    def _reset(self, position: tuple[int, str], head: int) -> StepResult:
        """No recorded block is on the chain any more: drop the read model, start again."""
        log.warning(
            "no block the indexer recorded up to %d is on the chain any more (a reset chain?); "
            "dropping the read model and indexing again from the deployment block",
            position[0],
        )
        with session_scope(self.session_factory) as session:
            gone = session.execute(
                delete(IndexerCursor).where(
                    IndexerCursor.name == CURSOR_NAME,
                    IndexerCursor.block_number == position[0],
                    IndexerCursor.block_hash == position[1],
                )
            )
            if getattr(gone, "rowcount", 0) != 1:
                raise IndexerConflict(f"the cursor is no longer at block {position[0]}")
            removed = session.scalar(select(func.count()).select_from(ChainEvent)) or 0
            self._drop(session)
        self._set_as_of(None)
        return StepResult(
            "reset", head=head, from_block=position[0], removed=removed, reason="no common block"
        )

    def _drop(self, session: Session) -> None:
        for model in self.registry.tables():
            session.execute(delete(model))
        for bookkeeping in (ChainEvent, IndexedBlock, IndexedContract, IndexerCursor):
            session.execute(delete(bookkeeping))

    def drop(self) -> None:
        """Empty the read model and the indexer's state (the next step starts from scratch)."""
        with session_scope(self.session_factory) as session:
            self._drop(session)
        self._set_as_of(None)

    def rebuild_projections(
        self, session: Session, removed: Sequence[IndexedEvent] | None = None
    ) -> None:
        """Recompute projections from the events in `chain_events`.

        With `removed` (events just deleted), only the projections that handled one of them, and
        for a partitioned projection only the affected keys; without it, every projection in full.
        """
        for projection in self.registry.projections:
            handled = self.registry.keys_of(projection)
            affected = None if removed is None else [e for e in removed if e.key in handled]
            if affected == []:
                continue  # none of the removed events was this projection's
            replays: Callable[[IndexedEvent], bool]
            if affected is not None and isinstance(projection, PartitionedProjection):
                keys = {projection.key_of(e) for e in affected}
                projection.forget(session, keys)
                replays = _in_partitions(projection, keys)
            else:
                projection.reset(session)
                replays = _every_event
            handlers = projection.handlers()
            for event in self._stored_events(session, handled):
                if replays(event):
                    handlers[event.key](session, event)

    @staticmethod
    def _stored_events(session: Session, handled: set[tuple[str, str]]) -> Iterator[IndexedEvent]:
        """The stored events of these kinds, in chain order, a page at a time."""
        if not handled:
            return
        contracts = sorted({c for c, _e in handled})
        names = sorted({e for _c, e in handled})
        after: tuple[int, int] | None = None
        while True:
            query = select(ChainEvent).where(
                ChainEvent.contract.in_(contracts), ChainEvent.event.in_(names)
            )
            if after is not None:
                query = query.where(
                    or_(
                        ChainEvent.block_number > after[0],
                        and_(ChainEvent.block_number == after[0], ChainEvent.log_index > after[1]),
                    )
                )
            rows = session.scalars(
                query.order_by(ChainEvent.block_number, ChainEvent.log_index).limit(_REBUILD_PAGE)
            ).all()
            for row in rows:
                event = IndexedEvent.from_row(row)
                if event.key in handled:
                    yield event
            if len(rows) < _REBUILD_PAGE:
                return
            after = (rows[-1].block_number, rows[-1].log_index)
            session.expunge_all()

    # --- status -----------------------------------------------------------------------------

    def status(self) -> IndexerStatus:
        head = int(self._w3.eth.block_number)
        targets = self.targets()
        with self.session_factory() as session:
            cursor = session.get(IndexerCursor, CURSOR_NAME)
            events = session.scalar(select(func.count()).select_from(ChainEvent)) or 0
            covered = set(session.scalars(select(IndexedContract.address)))
        on_chain = (
            None if cursor is None else self._hash_at(cursor.block_number) == cursor.block_hash
        )
        return IndexerStatus(
            cursor_block=cursor.block_number if cursor else None,
            cursor_hash=cursor.block_hash if cursor else None,
            cursor_updated_at=cursor.updated_at if cursor else None,
            head=head,
            start_block=self.start_block(),
            events=events,
            on_chain=on_chain,
            contracts=[
                IndexedContractInfo(name, address, block, address in covered)
                for address, (name, block) in targets.items()
            ],
        )
