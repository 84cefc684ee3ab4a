"""Customers: sealed personal data off-chain, a pseudonymous identity and commitment on-chain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from crm_gateway.api.deps import Caller, CallerDep
from crm_gateway.api.errors import problem_responses
from crm_gateway.api.routers.operations import OperationOut, WriteDep, WriteRequest
from crm_gateway.api.schemas import Bytes32Hex
from crm_gateway.api.services import CustomersDep
from crm_gateway.customers.profile import CustomerProfile, ProfilePatch
from crm_gateway.services.customers import Actor, CustomerWrite
from crm_gateway.services.errors import DomainError

# 409: the organisation already holds someone with that e-mail or phone, or a write conflicts;
# 410: the customer was erased (GDPR Art. 17).
router = APIRouter(
    prefix="/v1/customers", tags=["customers"], responses=problem_responses(409, 410)
)

CustomerId = Annotated[Bytes32Hex, Path(description="The customer's pseudonymous id (bytes32 hex)")]
Purpose = Annotated[
    str,
    Query(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9_.:-]*$",
        description="Why the data is read (recorded in the access log), e.g. `support`",
    ),
]


class CustomerWriteOut(BaseModel):
    customer_id: str
    operation: OperationOut


class CustomerOut(BaseModel):
    customer_id: str
    version: int
    profile: dict[str, Any]


class LookupOut(BaseModel):
    customer_ids: list[str]


class VerificationOut(BaseModel):
    intact: bool
    version: int
    block: int
    reason: str | None = Field(description="Why the record is not intact (null when it is)")


class CustomerExportOut(BaseModel):
    """Everything held about the customer (GDPR Art. 15 and 20)."""

    model_config = ConfigDict(extra="allow")

    customer_id: str
    controller_organisation: int
    version: int
    profile: dict[str, Any]
    created_at: str
    updated_at: str
    on_chain: dict[str, Any]
    access_log: list[dict[str, Any]]


def _actor(caller: Caller) -> Actor:
    return Actor(api_key_id=caller.api_key_id, org_id=caller.org_id, account=caller.account)


def _answer(
    written: CustomerWrite, request: WriteRequest, *, settled_status: int = status.HTTP_200_OK
) -> CustomerWriteOut:
    if not written.created:
        request.response.headers["Idempotent-Replayed"] = "true"
    view = request.settle(
        written.operation,
        location=f"/v1/customers/{written.customer_id}",
        settled_status=settled_status,
    )
    return CustomerWriteOut(customer_id=written.customer_id, operation=OperationOut.of(view))


@router.post("", response_model=CustomerWriteOut, status_code=202)
def create_customer(
    body: CustomerProfile, request: WriteDep, customers: CustomersDep
) -> CustomerWriteOut:
    """Register a customer (DATA_STEWARD): the profile is sealed here, its commitment goes on-chain.

    Answers 202 at once (201 with `?wait=true`), or 409 with the existing `customer_id` when
    this organisation already holds someone with that e-mail or phone. If another organisation
    already registered the person, this one joins the same on-chain identity.
    """
    written = customers.create(
        _actor(request.caller),
        body.model_dump(mode="json", exclude_none=True),
        idempotency_key=request.idempotency_key,
    )
    return _answer(written, request, settled_status=status.HTTP_201_CREATED)


@router.get("", response_model=LookupOut)
def lookup_customers(
    caller: CallerDep,
    customers: CustomersDep,
    email: Annotated[str | None, Query(max_length=254)] = None,
    phone: Annotated[str | None, Query(max_length=32)] = None,
) -> LookupOut:
    """Find customers by e-mail or phone through the blind index (no personal data is stored)."""
    if (email is None) == (phone is None):
        raise DomainError("give exactly one of the query parameters email or phone")
    try:
        found = customers.lookup(_actor(caller), email=email, phone=phone)
    except ValueError as exc:
        raise DomainError(str(exc)) from exc
    return LookupOut(customer_ids=found)


@router.get("/{customer_id}", response_model=CustomerOut)
def read_customer(
    customer_id: CustomerId, purpose: Purpose, caller: CallerDep, customers: CustomersDep
) -> CustomerOut:
    """The decrypted profile (DATA_STEWARD, AGENT); every attempt is written to the access log."""
    return CustomerOut.model_validate(customers.read(_actor(caller), customer_id, purpose))


@router.patch("/{customer_id}", response_model=CustomerWriteOut, status_code=202)
def update_customer(
    customer_id: CustomerId, body: ProfilePatch, request: WriteDep, customers: CustomersDep
) -> CustomerWriteOut:
    """A new version of the profile and a new on-chain commitment (DATA_STEWARD)."""
    written = customers.update(
        _actor(request.caller),
        customer_id,
        body.model_dump(mode="json", exclude_unset=True),
        idempotency_key=request.idempotency_key,
    )
    return _answer(written, request)


@router.delete("/{customer_id}", response_model=CustomerWriteOut, status_code=202)
def erase_customer(
    customer_id: CustomerId, request: WriteDep, customers: CustomersDep
) -> CustomerWriteOut:
    """Erase (GDPR Art. 17): data key, salt and blind indexes destroyed; the chain records it."""
    written = customers.erase(
        _actor(request.caller), customer_id, idempotency_key=request.idempotency_key
    )
    return _answer(written, request)


@router.get("/{customer_id}/verify", response_model=VerificationOut)
def verify_customer(
    customer_id: CustomerId, caller: CallerDep, customers: CustomersDep
) -> VerificationOut:
    """Recompute the commitment from the vault and compare it with the chain."""
    return VerificationOut.model_validate(
        customers.verify(_actor(caller), customer_id), from_attributes=True
    )


@router.get("/{customer_id}/export", response_model=CustomerExportOut)
def export_customer(
    customer_id: CustomerId, caller: CallerDep, customers: CustomersDep
) -> CustomerExportOut:
    """Everything held about the customer, as portable JSON (GDPR Art. 15 and 20)."""
    return CustomerExportOut.model_validate(customers.export(_actor(caller), customer_id))
