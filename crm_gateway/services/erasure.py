"""Erasure requests (GDPR Art. 17): the customer's wallet signs one in the portal; a DATA_STEWARD
of the organisation carries it out (the crypto-shredding `CustomerService.erase`, recorded
on-chain) or refuses it with a reason; the portal shows where each one stands.

The request is EIP-712 typed data (`ErasureRequest`: customer, organisation, time) signed by the
customer's registered wallet, kept as evidence of who asked and when.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Protocol

from eth_account import Account
from eth_account.messages import encode_typed_data
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.chain.contracts import Contracts
from crm_gateway.chain.eip712 import typed_data
from crm_gateway.services.customers import Actor, CustomerService
from crm_gateway.services.errors import (
    ConflictError,
    DomainError,
    NotFoundError,
    PermissionDeniedError,
)
from crm_gateway.services.operations import OperationService
from crm_gateway.store import erasure as store
from crm_gateway.store.erasure import ErasureRequest, ErasureStatus

ERASURE_FIELDS = (("customerId", "bytes32"), ("orgId", "uint64"), ("requestedAt", "uint64"))
DOMAIN_NAME = "crm-chaincode privacy portal"
STEWARD = "DATA_STEWARD"


class Roles(Protocol):
    def has_role(self, role: str, account: str) -> bool: ...


def _json(row: ErasureRequest) -> dict[str, Any]:
    return {
        "id": row.id,
        "customer_id": row.customer_id,
        "org_id": row.org_id,
        "wallet": row.wallet,
        "requested_at": row.requested_at.isoformat(),
        "status": ErasureStatus(row.status).value,
        "reason": row.reason,
        "operation_id": row.operation_id,
        "updated_at": row.updated_at.isoformat(),
    }


class ErasureService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        contracts: Contracts,
        customers: CustomerService,
        operations: OperationService,
        roles: Roles,
        gateway_org_id: int,
        signature_ttl_seconds: int,
    ) -> None:
        self._sessions = sessions
        self._contracts = contracts
        self._customers = customers
        self._operations = operations
        self._roles = roles
        self._org_id = gateway_org_id
        self._ttl = signature_ttl_seconds

    # --- the customer's side ------------------------------------------------------------------

    def typed_data(self, customer_id: str) -> dict[str, Any]:
        """What the customer's wallet signs to ask this organisation to erase them."""
        return self._typed(customer_id, int(time.time()))

    def _typed(self, customer_id: str, requested_at: int) -> dict[str, Any]:
        return typed_data(
            "ErasureRequest",
            ERASURE_FIELDS,
            {"customerId": customer_id, "orgId": self._org_id, "requestedAt": requested_at},
            name=DOMAIN_NAME,
            chain_id=self._contracts.chain.chain_id,
            verifying_contract=self._contracts["CustomerRegistry"].address,
        )

    def request(
        self, customer_id: str, wallet: str, requested_at: int, signature: str
    ) -> dict[str, Any]:
        """Record a request the customer's wallet signed (within SIGNATURE_TTL_SECONDS)."""
        now = int(time.time())
        if not now - self._ttl <= requested_at <= now + 60:
            raise DomainError("the request's time is not within the signature's lifetime")
        message = encode_typed_data(full_message=self._typed(customer_id, requested_at))
        try:
            signer = Account.recover_message(message, signature=signature)
        except Exception as exc:  # eth-account raises several kinds for a malformed signature
            raise DomainError("the signature is malformed", field="signature") from exc
        if signer != wallet:
            raise PermissionDeniedError("the request was not signed by the customer's wallet")
        with self._sessions() as session:
            open_ = [
                r
                for r in store.of_customer(session, customer_id)
                if r.status in (ErasureStatus.REQUESTED, ErasureStatus.IN_PROGRESS)
            ]
            if open_:
                raise ConflictError("an erasure request is already open", request_id=open_[0].id)
            row = ErasureRequest(
                customer_id=customer_id,
                org_id=self._org_id,
                wallet=wallet,
                signature=signature,
                requested_at=datetime.fromtimestamp(requested_at, UTC),
            )
            session.add(row)
            session.commit()
            return _json(row)

    def of_customer(self, customer_id: str) -> list[dict[str, Any]]:
        with self._sessions() as session:
            rows = list(store.of_customer(session, customer_id))
            for row in rows:
                self._refresh(row)
            session.commit()
            return [_json(r) for r in rows]

    # --- the organisation's side --------------------------------------------------------------

    def _require_steward(self, actor: Actor) -> None:
        if actor.org_id != self._org_id or not self._roles.has_role(STEWARD, actor.account):
            raise PermissionDeniedError(
                f"requires {STEWARD} in organisation {self._org_id}", required_roles=[STEWARD]
            )

    def pending(self, actor: Actor, status: ErasureStatus | None) -> list[dict[str, Any]]:
        self._require_steward(actor)
        with self._sessions() as session:
            rows = list(store.of_org(session, self._org_id, status))
            for row in rows:
                self._refresh(row)
            session.commit()
            return [_json(r) for r in rows]

    def _open(self, session: Session, request_id: str) -> ErasureRequest:
        row = session.get(ErasureRequest, request_id)
        if row is None or row.org_id != self._org_id:
            raise NotFoundError(f"erasure request {request_id} does not exist")
        if row.status is not ErasureStatus.REQUESTED:
            raise ConflictError(f"erasure request {request_id} is {row.status.value}")
        return row

    def carry_out(self, actor: Actor, request_id: str) -> dict[str, Any]:
        """Erase the customer (the steward's own `erase`, with its checks and log entry)."""
        self._require_steward(actor)
        with self._sessions() as session:
            customer_id = self._open(session, request_id).customer_id
        write = self._customers.erase(actor, customer_id, idempotency_key=f"erasure:{request_id}")
        with self._sessions() as session:
            row = self._open(session, request_id)
            row.status = ErasureStatus.IN_PROGRESS
            row.operation_id = write.operation.id
            row.decided_by = actor.account
            self._refresh(row)
            session.commit()
            return _json(row)

    def refuse(self, actor: Actor, request_id: str, reason: str) -> dict[str, Any]:
        """Refuse with a reason the customer sees (e.g. a legal obligation to keep the data)."""
        self._require_steward(actor)
        with self._sessions() as session:
            row = self._open(session, request_id)
            row.status = ErasureStatus.REFUSED
            row.reason = reason
            row.decided_by = actor.account
            session.commit()
            return _json(row)

    def _refresh(self, row: ErasureRequest) -> None:
        """An erasure in progress is done once its chain write is confirmed."""
        if row.status is not ErasureStatus.IN_PROGRESS or row.operation_id is None:
            return
        operation = self._operations.get_internal(row.operation_id)
        if operation.status == "confirmed":
            row.status = ErasureStatus.DONE
        elif operation.status == "failed":
            error = operation.error or {"name": "Reverted"}
            row.status = ErasureStatus.REQUESTED
            row.reason = f"the erasure failed on-chain ({error['name']}); it will be retried"
