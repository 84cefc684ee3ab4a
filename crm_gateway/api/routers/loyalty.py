"""Loyalty points: merchants earn, reward and redeem; customers' signatures and transactions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from crm_gateway.api.deps import CallerDep
from crm_gateway.api.routers.operations import OperationOut, WriteDep
from crm_gateway.api.schemas import (
    MAX_STORED_INT,
    BlockQuery,
    Bytes32Hex,
    EthAddress,
    StrictModel,
    TypedDataOut,
)
from crm_gateway.api.services import RuntimeDep
from crm_gateway.runtime import Runtime
from crm_gateway.services.errors import ChainRefusedError, DomainError
from crm_gateway.services.loyalty import LoyaltyService, Period

router = APIRouter(prefix="/v1/loyalty", tags=["loyalty"])

#: Whole points; the read model keeps amounts and balances as 64-bit integers.
Points = Annotated[int, Field(ge=0, le=2**63 - 1, description="Whole points (0 decimals)")]
Uint256 = Annotated[int, Field(ge=0, le=2**256 - 1)]
Signature = Annotated[
    str, Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="65-byte signature (r, s, v), hex")
]
Reason = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="A reason code (`order 4711`), hashed with keccak256, or its 32-byte hash",
    ),
]
Customer = Annotated[
    str,
    Path(
        min_length=42,
        max_length=66,
        description="A customer id (`0x` + 64 hex digits) or a wallet address",
    ),
]


def _loyalty_service(runtime: Runtime) -> LoyaltyService:
    read_model = runtime.read_model

    def customer_wallet(customer_id: str) -> str | None:
        found = read_model.customer(customer_id)
        return None if found is None else found.wallet

    return LoyaltyService(
        contracts=runtime.contracts,
        loyalty=read_model,
        roles=read_model,
        customer_wallet=customer_wallet,
        org_names=lambda: {o.org_id: o.name for o in read_model.organizations()},
        signature_ttl_seconds=runtime.settings.signature_ttl_seconds,
    )


def get_loyalty_service(runtime: RuntimeDep) -> LoyaltyService:
    return _loyalty_service(runtime)


LoyaltyDep = Annotated[LoyaltyService, Depends(get_loyalty_service)]


class HolderIn(StrictModel):
    customer_id: Bytes32Hex | None = Field(default=None, description="The customer's id")
    wallet: EthAddress | None = Field(default=None, description="Or the customer's wallet")

    def holder(self) -> str:
        if (self.customer_id is None) == (self.wallet is None):
            raise DomainError("give exactly one of customer_id or wallet", field="customer_id")
        return self.customer_id or self.wallet or ""


class EarnIn(HolderIn):
    amount: Points
    reason: Reason


class RewardIn(HolderIn):
    amount: Points
    action: Reason = Field(description="The action (e.g. a survey response id) or its hash")


class RedeemIn(HolderIn):
    amount: Points
    reason: Reason
    deadline: Uint256 | None = Field(default=None, description="The permit's deadline")
    signature: Signature | None = Field(
        default=None,
        description="The customer's EIP-2612 permit for your account; omit to "
        "redeem within an allowance the customer gave by their own approve",
    )
    nonce: Uint256 | None = Field(default=None, description="The nonce the wallet signed")


class PermitIn(StrictModel):
    owner: str = Field(
        min_length=42, max_length=66, description="The customer id or wallet that signed"
    )
    spender: EthAddress
    value: Uint256
    deadline: Uint256
    signature: Signature
    nonce: Uint256 | None = None


class RawTransactionIn(StrictModel):
    raw: str = Field(pattern=r"^0x([0-9a-fA-F]{2})+$", max_length=262_144)


class TransactionOut(BaseModel):
    tx_hash: str
    status: str = Field(description="submitted, confirmed or failed")
    block_number: int | None = None
    gas_used: int | None = None
    events: list[dict[str, Any]] | None = None


class AllowanceOut(BaseModel):
    owner: str
    spender: str
    allowance: int
    block: int
    consistency: str


class BalanceOut(BaseModel):
    customer_id: str | None
    wallet: str | None
    balance: int
    block: int | None
    as_of_block: int | None
    consistency: str


class LoyaltyHistoryOut(BaseModel):
    customer_id: str | None
    wallet: str | None
    as_of_block: int | None
    movements: list[dict[str, Any]] = Field(description="Oldest first")


class SettlementOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_time: str | None = Field(alias="from")
    to_time: str | None = Field(alias="to")
    period: Period
    as_of_block: int | None
    totals: list[dict[str, Any]] = Field(description="Per merchant organisation")
    periods: list[dict[str, Any]]


@router.post("/earn", response_model=OperationOut, status_code=202)
def earn(body: EarnIn, request: WriteDep, loyalty: LoyaltyDep) -> OperationOut:
    """Issue points to a customer's registered wallet for your organisation (MERCHANT key)."""
    write = loyalty.earn(request.caller.account, body.holder(), body.amount, body.reason)
    return request.answer(write, body.model_dump(mode="json"))


@router.post("/rewards", response_model=OperationOut, status_code=202)
def reward(body: RewardIn, request: WriteDep, loyalty: LoyaltyDep) -> OperationOut:
    """Issue points for a customer action, at most once per action hash (MERCHANT key)."""
    write = loyalty.reward(request.caller.account, body.holder(), body.amount, body.action)
    return request.answer(write, body.model_dump(mode="json"))


@router.post("/redeem", response_model=OperationOut, status_code=202)
def redeem(body: RedeemIn, request: WriteDep, loyalty: LoyaltyDep) -> OperationOut:
    """Redeem a customer's points at your organisation (MERCHANT key), authorised by their
    EIP-2612 permit for your account (see `GET /permit-typed-data`) in the same transaction."""
    write = loyalty.redeem(
        request.caller.account,
        body.holder(),
        body.amount,
        body.reason,
        deadline=body.deadline,
        signature=body.signature,
        nonce=body.nonce,
    )
    return request.answer(write, body.model_dump(mode="json"))


@router.post("/permits", response_model=OperationOut, status_code=202)
def relay_permit(body: PermitIn, request: WriteDep, loyalty: LoyaltyDep) -> OperationOut:
    """Submit a customer's signed EIP-2612 permit: an approve by signature (RELAYER key)."""
    write = loyalty.relay_permit(
        request.caller.account,
        body.owner,
        body.spender,
        body.value,
        body.deadline,
        body.signature,
        body.nonce,
    )
    return request.answer(write, body.model_dump(mode="json"))


@router.post("/transfer", response_model=TransactionOut, status_code=202)
def transfer(body: RawTransactionIn, request: WriteDep, loyalty: LoyaltyDep) -> TransactionOut:
    """Broadcast a customer wallet's own signed `transfer`, `transferFrom`, `approve` or
    `permit` transaction to the token, checked first as the token would check it."""
    tx_hash = loyalty.broadcast_raw(bytes.fromhex(body.raw[2:]))
    if not request.wait:
        return TransactionOut(tx_hash=tx_hash, status="submitted")
    outcome = loyalty.receipt(tx_hash, request.wait_timeout)
    if outcome["status"] == "failed":
        raise ChainRefusedError(
            "the token refused the transaction", error={"name": "Reverted", "args": {}}
        )
    block = outcome.get("block_number")
    if block is not None:
        if request.wait_for_index is not None:
            request.wait_for_index(block, request.wait_timeout)
        request.response.status_code = 200
    return TransactionOut.model_validate(outcome)


@router.get("/permit-typed-data", response_model=TypedDataOut)
def permit_typed_data(
    _caller: CallerDep,
    loyalty: LoyaltyDep,
    customer: Annotated[str, Query(min_length=42, max_length=66)],
    spender: Annotated[str, Query(pattern=r"^0x[0-9a-fA-F]{40}$")],
    value: Annotated[int, Query(ge=0, le=2**256 - 1)],
    deadline: Annotated[int | None, Query(ge=0, le=2**256 - 1)] = None,
) -> TypedDataOut:
    """The EIP-712 typed data (eth_signTypedData_v4) of a permit the customer's wallet signs,
    with the owner's next nonce and a deadline."""
    return TypedDataOut.model_validate(
        loyalty.permit_typed_data(customer, spender, value, deadline)
    )


@router.get("/allowance", response_model=AllowanceOut)
def allowance(
    _caller: CallerDep,
    loyalty: LoyaltyDep,
    owner: Annotated[str, Query(min_length=42, max_length=66)],
    spender: Annotated[str, Query(pattern=r"^0x[0-9a-fA-F]{40}$")],
) -> AllowanceOut:
    """How many of the owner's points the spender may still move (from the chain)."""
    return AllowanceOut.model_validate(loyalty.allowance(owner, spender))


@router.get("/settlement", response_model=SettlementOut)
def settlement(
    _caller: CallerDep,
    loyalty: LoyaltyDep,
    from_time: Annotated[
        datetime | None, Query(alias="from", description="Start (inclusive), ISO 8601")
    ] = None,
    to_time: Annotated[
        datetime | None, Query(alias="to", description="End (exclusive), ISO 8601")
    ] = None,
    period: Annotated[Period, Query()] = Period.MONTH,
) -> SettlementOut:
    """Per merchant organisation: points issued, redeemed and net (issued - redeemed), per
    period and in total, by block time (UTC), from the read model."""
    return SettlementOut.model_validate(
        loyalty.settlement(_aware(from_time), _aware(to_time), period)
    )


@router.get("/{customer}/balance", response_model=BalanceOut)
def balance(
    customer: Customer,
    _caller: CallerDep,
    loyalty: LoyaltyDep,
    as_of_block: Annotated[
        int | None,
        Query(ge=0, le=MAX_STORED_INT, description="The balance at the end of this block"),
    ] = None,
    consistency: Annotated[Literal["read_model", "chain"], Query()] = "read_model",
) -> BalanceOut:
    """A customer's (or wallet's) balance from the read model, now or at a block."""
    return BalanceOut.model_validate(
        loyalty.balance(customer, as_of_block=as_of_block, consistency=consistency)
    )


@router.get("/{customer}/history", response_model=LoyaltyHistoryOut)
def history(
    customer: Customer,
    _caller: CallerDep,
    loyalty: LoyaltyDep,
    from_block: BlockQuery = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> LoyaltyHistoryOut:
    """A customer's (or wallet's) earns, rewards, redemptions and transfers, oldest first."""
    return LoyaltyHistoryOut.model_validate(
        loyalty.history(customer, from_block=from_block, limit=limit)
    )


def _aware(moment: datetime | None) -> datetime | None:
    """A time without a zone is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
