"""What the operators' console shows: the chain's head and latest blocks, the consortium's
proposals, and this organisation's write pipeline. Reads only; writes go through the API's own
endpoints (approve, execute, anchor), with the signed-in key's roles checked there."""

from __future__ import annotations

from typing import Any

from eth_utils.address import to_checksum_address
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from web3.contract import Contract

from crm_gateway.audit import ANCHOR_CONTRACT, Anchorer, LogVerifier
from crm_gateway.audit.chain_check import recorded_anchors, verify_chain
from crm_gateway.chain.contracts import Contracts
from crm_gateway.services.access import AccessService
from crm_gateway.store.models import ApiKey, ChainTransaction, Operation, OperationStatus

CONSORTIUM = "Consortium"
PROPOSAL_KINDS = (
    "add_organization",
    "suspend_organization",
    "reactivate_organization",
    "change_threshold",
)
MAX_BLOCKS = 50
MAX_OPERATIONS = 200


class ConsoleService:
    def __init__(
        self, *, contracts: Contracts, sessions: sessionmaker[Session], anchorer: Anchorer
    ) -> None:
        self._contracts = contracts
        self._sessions = sessions
        self._anchorer = anchorer
        self._access = AccessService(contracts)

    def _known(self) -> dict[str, str]:
        """Deployed contracts by address (checksummed), to name a transaction's target."""
        known: dict[str, str] = {}
        for name in self._contracts.record.contracts:
            try:
                known[to_checksum_address(self._contracts[name].address)] = name
            except LookupError:
                continue
        return known

    def _function_of(self, contract: Contract | None, data: bytes) -> str | None:
        if contract is None or len(data) < 4:
            return None
        try:
            function, _args = contract.decode_function_input(data)
        except ValueError:
            return None
        return str(function.fn_name)

    def chain(self, count: int) -> dict[str, Any]:
        """The head and the latest `count` blocks, each with its transactions (target named)."""
        w3 = self._contracts.chain.w3
        head = int(w3.eth.block_number)
        known = self._known()
        blocks = []
        for number in range(head, max(-1, head - min(count, MAX_BLOCKS)), -1):
            block = w3.eth.get_block(number, full_transactions=True)
            txs = []
            for tx in block["transactions"]:
                assert not isinstance(tx, bytes)
                to = to_checksum_address(tx["to"]) if tx.get("to") else None
                name = known.get(to) if to else None
                txs.append(
                    {
                        "hash": "0x" + bytes(tx["hash"]).hex(),
                        "from": to_checksum_address(tx["from"]),
                        "to": to,
                        "contract": name,
                        "function": self._function_of(
                            self._contracts[name] if name else None,
                            _calldata(tx.get("input") or tx.get("data")),
                        ),
                        "nonce": int(tx["nonce"]),
                    }
                )
            blocks.append(
                {
                    "number": number,
                    "hash": "0x" + bytes(block["hash"]).hex(),
                    "timestamp": int(block["timestamp"]),
                    "gas_used": int(block["gasUsed"]),
                    "transactions": txs,
                }
            )
        return {"chain_id": self._contracts.chain.chain_id, "head": head, "blocks": blocks}

    def proposals(self, caller_org: int) -> dict[str, Any]:
        """Every proposal, newest first, with its approvals and whether the caller's organisation
        approved it already."""
        functions = self._contracts[CONSORTIUM].functions
        count = int(functions.proposalCount().call())
        now = int(self._contracts.chain.w3.eth.get_block("latest")["timestamp"])
        items = []
        for proposal_id in range(count, 0, -1):
            fields = self._access.proposal(proposal_id)
            executed, expires = bool(fields["executed"]), int(fields["expiresAt"])
            approvals, required = int(fields["approvals"]), int(fields["requiredApprovals"])
            items.append(
                {
                    "id": proposal_id,
                    "kind": PROPOSAL_KINDS[int(fields["kind"])],
                    "proposer_org": int(fields["proposerOrg"]),
                    "proposer": to_checksum_address(fields["proposer"]),
                    "expires_at": expires,
                    "approvals": approvals,
                    "required_approvals": required,
                    "approved_by_you": bool(functions.hasApproved(proposal_id, caller_org).call()),
                    "status": "executed"
                    if executed
                    else "expired"
                    if expires <= now
                    else "ready"
                    if approvals >= required
                    else "pending",
                }
            )
        return {"proposals": items}

    def verify(self, org_id: int) -> dict[str, Any]:
        """`crm-chaincode audit verify` and `chain verify`, as their reports."""
        anchor = self._contracts[ANCHOR_CONTRACT] if self._anchorer.deployed else None
        self._anchorer.refresh()
        log = LogVerifier(self._sessions, anchor=anchor, org_id=org_id).verify()
        chain = verify_chain(
            self._contracts.chain,
            self._contracts.record,
            recorded=recorded_anchors(self._sessions),
        )
        return {
            "audit": {
                "intact": log.intact,
                "summary": log.summary,
                "entries": log.entries,
                "batches": log.batches,
            },
            "chain": {
                "intact": chain.intact,
                "summary": chain.summary,
                "head": chain.head,
                "blocks": chain.blocks,
            },
        }

    def pipeline(self, org_id: int, status: OperationStatus | None) -> dict[str, Any]:
        """This organisation's latest writes (by its API keys), with their decoded errors."""
        with self._sessions() as session:
            query = (
                select(Operation, ChainTransaction.tx_hash, ApiKey.role)
                .join(ApiKey, ApiKey.id == Operation.api_key_id)
                .outerjoin(ChainTransaction, ChainTransaction.id == Operation.chain_tx_id)
                .where(ApiKey.org_id == org_id)
                .order_by(Operation.seq.desc())
                .limit(MAX_OPERATIONS)
            )
            if status is not None:
                query = query.where(Operation.status == status)
            rows = session.execute(query).all()
            counts = {s.value: 0 for s in OperationStatus}
            for operation, _tx, _role in rows:
                counts[OperationStatus(operation.status).value] += 1
            return {
                "counts": counts,
                "operations": [
                    {
                        "id": operation.id,
                        "kind": operation.kind,
                        "status": OperationStatus(operation.status).value,
                        "sender": operation.sender,
                        "key_role": role,
                        "tx_hash": tx_hash,
                        "error": None
                        if operation.error_name is None
                        else {"name": operation.error_name, "args": operation.error_args or {}},
                        "created_at": operation.created_at.isoformat(),
                        "updated_at": operation.updated_at.isoformat(),
                    }
                    for operation, tx_hash, role in rows
                ],
            }


def _calldata(value: Any) -> bytes:
    """A transaction's input as bytes (nodes give bytes or hex)."""
    if value is None:
        return b""
    if isinstance(value, str):
        return bytes.fromhex(value.removeprefix("0x"))
    return bytes(value)
