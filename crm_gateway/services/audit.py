"""Audit: the access log and its anchors, inclusion proofs, and one timeline per customer.

Who may do what (all within this gateway's organisation):

* AUDITOR and DATA_STEWARD keys read the log, proofs and timelines. None of these hold personal
  data (the log never does; a timeline is on-chain events and log entries), which is why an
  AUDITOR, who may never read a profile, may read them. The steward answers data subjects'
  access requests and so needs the same view.
* AUDITOR keys anchor on demand (the contract takes anchors from AUDITORs only).
* Any key may check a proof: it is a pure function of public data.

Role and key changes are logged here too (`role_change`, `record_change`): who changed which
grant or key, allowed or refused; never a secret.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eth_utils.address import to_checksum_address
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.audit.anchoring import ANCHOR_CONTRACT, Anchorer, BatchView
from crm_gateway.audit.events import CustomerEvents, EventView
from crm_gateway.audit.merkle import leaf_hash, process_proof
from crm_gateway.chain.contracts import Contracts
from crm_gateway.indexer.read_model import ReadModel
from crm_gateway.pipeline.outbox import ChainWrite
from crm_gateway.services.access import Role
from crm_gateway.services.errors import ConflictError, DomainError, NotFoundError
from crm_gateway.services.errors import PermissionDeniedError as Forbidden
from crm_gateway.store import audit as log_store
from crm_gateway.store import customers as store
from crm_gateway.store.models import (
    AccessAction,
    AccessDecision,
    AccessLogEntry,
    AuditBatch,
    AuditBatchStatus,
)

READ_ROLES = (Role.AUDITOR, Role.DATA_STEWARD)
ANCHOR_ROLES = (Role.AUDITOR,)
MAX_LOG_PAGE = 1_000


class NotAnchoredError(ConflictError):
    """The entry is not in an anchored batch yet."""

    status, slug, title = 409, "not-anchored", "Not anchored yet"


@dataclass(frozen=True)
class AuditActor:
    """Who is asking: an API key (or an admin command: no key) and its on-chain account."""

    api_key_id: str | None
    org_id: int
    account: str | None


def entry_json(entry: AccessLogEntry | Any) -> dict[str, Any]:
    """An access-log entry as the API shows it (no personal data: there is none in it)."""
    return {
        "seq": int(entry.seq),
        "at": entry.at.isoformat(),
        "api_key_id": entry.api_key_id,
        "org_id": entry.org_id,
        "account": entry.account,
        "customer_id": entry.customer_id,
        "purpose": entry.purpose,
        "action": AccessAction(entry.action).value,
        "decision": AccessDecision(entry.decision).value,
        "reason": entry.reason,
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
    }


def _anchor_pointer(seq: int, batch: AuditBatch | None) -> dict[str, Any]:
    if batch is None or batch.status is not AuditBatchStatus.ANCHORED:
        return {"seq": seq, "anchored": False, "batch_id": None, "proof_url": None}
    return {
        "seq": seq,
        "anchored": True,
        "batch_id": batch.chain_batch_id,
        "tx_hash": batch.tx_hash,
        "proof_url": f"/v1/audit/{seq}/proof",
    }


class AuditService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        contracts: Contracts,
        read_model: ReadModel,
        anchorer: Anchorer,
        gateway_org_id: int,
    ) -> None:
        self._sessions = sessions
        self._contracts = contracts
        self._read_model = read_model
        self._anchorer = anchorer
        self._org_id = gateway_org_id

    # --- checks ---------------------------------------------------------------------------

    def authorise(self, actor: AuditActor, roles: tuple[Role, ...] = READ_ROLES) -> None:
        """Refuse unless the actor holds one of `roles` (per the read model) in this gateway's
        organisation."""
        if actor.org_id != self._org_id:
            raise Forbidden(
                f"this gateway holds the access log of organisation {self._org_id} only",
                required_roles=[r.value for r in roles],
            )
        account = actor.account or ""
        if not any(self._read_model.has_role(role.value, account) for role in roles):
            raise Forbidden(
                f"requires one of {', '.join(r.value for r in roles)}",
                required_roles=[r.value for r in roles],
            )

    # --- the log ----------------------------------------------------------------------------

    def log(
        self, actor: AuditActor, *, customer_id: str | None, from_seq: int, limit: int
    ) -> dict[str, Any]:
        """A page of the log from `from_seq`, optionally of one customer, each entry with its
        anchoring batch; `next_from_seq` continues it (None at the end)."""
        self.authorise(actor)
        limit = max(1, min(limit, MAX_LOG_PAGE))
        self._anchorer.refresh()
        with self._sessions() as session:
            key = customer_id.lower() if customer_id else None
            entries = log_store.log_page(session, customer_id=key, from_seq=from_seq, limit=limit)
            batches = log_store.anchored_ranges(session, [e.seq for e in entries])
            head = log_store.read_head(session)
            items = [
                {**entry_json(e), "anchor": _anchor_pointer(e.seq, batches.get(e.seq))}
                for e in entries
            ]
        return {
            "entries": items,
            "next_from_seq": items[-1]["seq"] + 1 if len(items) == limit else None,
            "head": {"seq": head.last_seq, "entry_hash": head.last_hash},
        }

    # --- proofs ---------------------------------------------------------------------------

    def proof(self, actor: AuditActor, seq: int) -> dict[str, Any]:
        """Entry `seq`, its leaf, its Merkle proof, the batch root and the anchoring transaction."""
        self.authorise(actor)
        return self.proof_of(seq)

    def proof_of(self, seq: int) -> dict[str, Any]:
        """`proof` without the role check: for the customer the entry is about (the portal)."""
        self._anchorer.refresh()
        with self._sessions() as session:
            entry = log_store.get_entry(session, seq)
            if entry is None:
                raise NotFoundError(f"access-log entry {seq} does not exist")
            batch = log_store.batch_of(session, seq)
            if batch is None or batch.status is not AuditBatchStatus.ANCHORED:
                state = "is being anchored" if batch is not None else "is not anchored yet"
                raise NotAnchoredError(
                    f"access-log entry {seq} {state}; entries are anchored every "
                    "AUDIT_ANCHOR_INTERVAL_SECONDS, or at once with POST /v1/audit/anchors"
                )
            shown = entry_json(entry)
            view = BatchView.of(batch)
        tree = self._anchorer.tree(view)
        if tree is None or "0x" + tree.root.hex() != view.root.lower():
            raise ConflictError(
                f"batch {view.chain_batch_id} (entries {view.first_seq} to {view.last_seq}) no "
                "longer matches its anchored root; run `crm-chaincode audit verify`"
            )
        leaf = leaf_hash(seq, bytes.fromhex(str(shown["entry_hash"])))
        return {
            "entry": shown,
            "leaf": "0x" + leaf.hex(),
            "proof": ["0x" + node.hex() for node in tree.proof(leaf)],
            "root": view.root,
            "batch": {
                "id": view.chain_batch_id,
                "first_seq": view.first_seq,
                "last_seq": view.last_seq,
                "count": view.count,
            },
            "anchor": {
                "contract": view.contract,
                "batch_id": view.chain_batch_id,
                "tx_hash": view.tx_hash,
                "block_number": view.block_number,
                "block_hash": view.block_hash,
                "chain_id": self._contracts.chain.chain_id,
            },
        }

    def verify_proof(
        self,
        *,
        batch_id: int,
        proof: list[bytes],
        leaf: bytes | None = None,
        seq: int | None = None,
        entry_hash: bytes | None = None,
        root: bytes | None = None,
    ) -> dict[str, Any]:
        """Check an inclusion proof in Python (against `root`, or the root on-chain) and through
        the contract's `verify` view (and `verifyEntry` when the entry is given)."""
        if seq is not None and entry_hash is not None and leaf is None:
            leaf = leaf_hash(seq, entry_hash)
        elif leaf is None or seq is not None or entry_hash is not None:
            raise DomainError("give either leaf, or seq and entry_hash")
        anchor = self._contracts[ANCHOR_CONTRACT]
        count = int(anchor.functions.batchCount().call())
        if not 1 <= batch_id <= count:
            raise NotFoundError(f"batch {batch_id} is not anchored on-chain")
        on_chain = bytes(anchor.functions.batch(batch_id).call()[0])
        expected = root if root is not None else on_chain
        computed = process_proof(leaf, proof)
        contract_ok = bool(anchor.functions.verify(batch_id, leaf, proof).call())
        if seq is not None and entry_hash is not None:
            contract_ok = contract_ok and bool(
                anchor.functions.verifyEntry(batch_id, seq, entry_hash, proof).call()
            )
        python_ok = computed == expected
        return {
            "valid": python_ok and contract_ok,
            "python": python_ok,
            "contract": contract_ok,
            "leaf": "0x" + leaf.hex(),
            "computed_root": "0x" + computed.hex(),
            "root": "0x" + expected.hex(),
            "root_on_chain": "0x" + on_chain.hex(),
            "batch_id": batch_id,
            "contract_address": anchor.address,
        }

    # --- anchoring ------------------------------------------------------------------------

    def anchor(self, actor: AuditActor) -> list[BatchView]:
        """Queue the anchoring of every entry not yet in a batch, signed by the actor's account."""
        self.authorise(actor, ANCHOR_ROLES)
        if not self._anchorer.deployed:
            raise NotFoundError(f"{ANCHOR_CONTRACT} is not deployed; run `crm-chaincode deploy`")
        return self._anchorer.anchor(actor.account or "", api_key_id=actor.api_key_id)

    def batches(self, actor: AuditActor) -> list[BatchView]:
        self.authorise(actor)
        self._anchorer.refresh()
        return self._anchorer.batches()

    # --- timeline -------------------------------------------------------------------------

    def timeline(self, actor: AuditActor, customer_id: str) -> dict[str, Any]:
        """The customer's on-chain events and access-log entries, merged in time order."""
        self.authorise(actor)
        key = customer_id.lower()
        events = CustomerEvents(self._read_model.engine).of_customer(key)
        self._anchorer.refresh()
        with self._sessions() as session:
            entries = list(store.access_log_for(session, key))
            batches = log_store.anchored_ranges(session, [e.seq for e in entries])
            logged = [(e.at, 1, e.seq, _log_item(e, batches.get(e.seq))) for e in entries]
            seen = log_store.mined_times(session, [e.tx_hash for e in events])
        if not events and not entries:
            raise NotFoundError(f"nothing is known about customer {key}")
        # Our own transactions are placed by when this gateway saw them mined (the access log's
        # clock, to the microsecond); others' by their block's timestamp.
        mined = [
            (
                seen.get(e.tx_hash.lower(), e.block_timestamp),
                0,
                e.block_number * 100_000 + e.log_index,
                _event_item(e),
            )
            for e in events
        ]
        items = [item for *_order, item in sorted(mined + logged, key=_order_key)]
        return {
            "customer_id": key,
            "as_of_block": self._read_model.as_of_block(),
            "items": items,
        }

    # --- role and key changes ---------------------------------------------------------------

    def role_change(
        self,
        actor: AuditActor,
        action: AccessAction,
        role: str,
        account: str,
        make_write: Callable[[], ChainWrite],
    ) -> tuple[ChainWrite, Callable[[Session], None]]:
        """Check a grant or revocation (`make_write` raises a refusal, which is logged); return
        the write and the `off_chain` step that logs it in the outbox row's transaction."""
        verb = "to" if action is AccessAction.ROLE_GRANT else "from"
        what = f"{role} {verb} {to_checksum_address(account)}"
        try:
            write = make_write()
        except DomainError as refusal:
            self.record_change(actor, action, AccessDecision.REFUSED, f"{what}: {refusal.detail}")
            raise

        def off_chain(session: Session) -> None:
            record_change(session, actor, action, AccessDecision.ALLOWED, what)

        return write, off_chain

    def record_change(
        self, actor: AuditActor, action: AccessAction, decision: AccessDecision, what: str
    ) -> None:
        with self._sessions() as session:
            record_change(session, actor, action, decision, what)
            session.commit()


def record_change(
    session: Session,
    actor: AuditActor,
    action: AccessAction,
    decision: AccessDecision,
    what: str,
) -> None:
    """Log a role or key change (in the caller's transaction): `what` names the grant or key,
    never a secret."""
    store.log_access(
        session,
        action=action,
        decision=decision,
        customer_id=None,
        reason=what[:500],
        api_key_id=actor.api_key_id,
        org_id=actor.org_id,
        account=actor.account,
    )


def _order_key(item: tuple[datetime, int, int, dict[str, Any]]) -> tuple[datetime, int, int]:
    return item[0], item[1], item[2]


def _event_item(event: EventView) -> dict[str, Any]:
    return {
        "at": event.block_timestamp.isoformat(),
        "source": "chain",
        "type": event.event,
        "contract": event.contract,
        "details": event.args,
        "proof": {
            "tx_hash": event.tx_hash,
            "block_number": event.block_number,
            "block_hash": event.block_hash,
            "log_index": event.log_index,
        },
    }


def _log_item(entry: AccessLogEntry, batch: AuditBatch | None) -> dict[str, Any]:
    return {
        "at": entry.at.isoformat(),
        "source": "access_log",
        "type": AccessAction(entry.action).value,
        "details": {
            "decision": AccessDecision(entry.decision).value,
            "purpose": entry.purpose,
            "org_id": entry.org_id,
            "account": entry.account,
            "api_key_id": entry.api_key_id,
            "reason": entry.reason,
        },
        "proof": {**_anchor_pointer(entry.seq, batch), "entry_hash": entry.entry_hash},
    }
