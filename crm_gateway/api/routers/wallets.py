"""The customer's wallet: first link, rotation by the wallet, delayed recovery, cancellation.

The wallet is the customer's: a steward links the first one (signed by it), only the wallet
itself hands over to another (`/rotation`, both sign), and a lost wallet is recovered by the
custodian organisation's steward only after a delay in which the wallet can cancel (`/recovery`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from crm_gateway.api.deps import Caller, CallerDep
from crm_gateway.api.routers.operations import OperationOut, WriteDep, WriteRequest
from crm_gateway.api.schemas import Bytes32Hex, EthAddress, StrictModel, TypedDataOut
from crm_gateway.api.services import WalletsDep
from crm_gateway.services.customers import Actor, CustomerWrite

router = APIRouter(prefix="/v1/customers", tags=["wallets"])

CustomerId = Annotated[Bytes32Hex, Path(description="The customer's pseudonymous id (bytes32 hex)")]
Deadline = Annotated[int, Field(ge=0, le=2**256 - 1, description="From the typed data")]
Signature = Annotated[
    str, Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="65-byte signature of the typed data")
]


class WalletLinkIn(StrictModel):
    wallet: EthAddress
    deadline: Deadline
    signature: Signature


class WalletRotationIn(StrictModel):
    new_wallet: EthAddress
    deadline: Deadline
    current_signature: Signature = Field(description="The current wallet's `RotateWallet`")
    new_signature: Signature = Field(description="The new wallet's `LinkWallet`")


class WalletCancellationIn(StrictModel):
    deadline: Deadline
    signature: Signature = Field(description="The current wallet's `CancelWalletRecovery`")


class WalletWriteOut(BaseModel):
    customer_id: str
    operation: OperationOut


class WalletRecoveryOut(BaseModel):
    wallet: str
    ready_at: int = Field(description="Block timestamp from which it can complete")


class WalletStatusOut(BaseModel):
    customer_id: str
    wallet: str | None
    nonce: int = Field(description="The nonce the next wallet signature carries")
    recovery: WalletRecoveryOut | None
    recovery_delay_seconds: int


class RotationTypedDataOut(BaseModel):
    current_wallet: TypedDataOut = Field(description="`RotateWallet`, for the current wallet")
    new_wallet: TypedDataOut = Field(description="`LinkWallet`, for the new wallet")


def _actor(caller: Caller) -> Actor:
    return Actor(api_key_id=caller.api_key_id, org_id=caller.org_id, account=caller.account)


def _answer(written: CustomerWrite, request: WriteRequest) -> WalletWriteOut:
    if not written.created:
        request.response.headers["Idempotent-Replayed"] = "true"
    view = request.settle(written.operation, location=f"/v1/customers/{written.customer_id}/wallet")
    return WalletWriteOut(customer_id=written.customer_id, operation=OperationOut.of(view))


@router.get("/{customer_id}/wallet", response_model=WalletStatusOut)
def wallet_status(
    customer_id: CustomerId, caller: CallerDep, wallets: WalletsDep
) -> WalletStatusOut:
    """The customer's wallet, its nonce and any pending recovery, from the chain."""
    state = wallets.status(_actor(caller), customer_id)
    recovery = (
        None
        if state.recovery_wallet is None or state.recovery_ready_at is None
        else WalletRecoveryOut(wallet=state.recovery_wallet, ready_at=state.recovery_ready_at)
    )
    return WalletStatusOut(
        customer_id=customer_id,
        wallet=state.wallet,
        nonce=state.nonce,
        recovery=recovery,
        recovery_delay_seconds=state.recovery_delay_seconds,
    )


@router.get("/{customer_id}/wallet/typed-data", response_model=TypedDataOut)
def wallet_typed_data(
    customer_id: CustomerId,
    wallet: Annotated[EthAddress, Query(description="The wallet to link")],
    caller: CallerDep,
    wallets: WalletsDep,
) -> TypedDataOut:
    """`LinkWallet` (eth_signTypedData_v4 JSON), signed by a wallet to be linked first, or to
    be the target of a rotation or a recovery."""
    return TypedDataOut.model_validate(wallets.link_typed_data(_actor(caller), customer_id, wallet))


@router.post("/{customer_id}/wallet", response_model=WalletWriteOut, status_code=202)
def link_wallet(
    customer_id: CustomerId, body: WalletLinkIn, request: WriteDep, wallets: WalletsDep
) -> WalletWriteOut:
    """Link the customer's FIRST wallet with its signature (DATA_STEWARD of the organisation
    that registered the customer). A linked wallet is never replaced here: 422 `chain-refused`
    with `WalletAlreadyLinked`; see `/rotation` and `/recovery`."""
    written = wallets.link(
        _actor(request.caller),
        customer_id,
        wallet=body.wallet,
        deadline=body.deadline,
        signature=body.signature,
        idempotency_key=request.idempotency_key,
    )
    return _answer(written, request)


@router.get("/{customer_id}/wallet/rotation/typed-data", response_model=RotationTypedDataOut)
def rotation_typed_data(
    customer_id: CustomerId,
    new_wallet: Annotated[EthAddress, Query(description="The wallet to hand over to")],
    caller: CallerDep,
    wallets: WalletsDep,
) -> RotationTypedDataOut:
    """What the current wallet and the new wallet each sign for a rotation."""
    typed = wallets.rotation_typed_data(_actor(caller), customer_id, new_wallet)
    return RotationTypedDataOut.model_validate(typed)


@router.post("/{customer_id}/wallet/rotation", response_model=WalletWriteOut, status_code=202)
def rotate_wallet(
    customer_id: CustomerId, body: WalletRotationIn, request: WriteDep, wallets: WalletsDep
) -> WalletWriteOut:
    """Carry a rotation signed by the current and the new wallet (RELAYER or DATA_STEWARD key);
    it also cancels a pending recovery."""
    written = wallets.rotate(
        _actor(request.caller),
        customer_id,
        new_wallet=body.new_wallet,
        deadline=body.deadline,
        current_signature=body.current_signature,
        new_signature=body.new_signature,
        idempotency_key=request.idempotency_key,
    )
    return _answer(written, request)


@router.post("/{customer_id}/wallet/recovery", response_model=WalletWriteOut, status_code=202)
def start_wallet_recovery(
    customer_id: CustomerId, body: WalletLinkIn, request: WriteDep, wallets: WalletsDep
) -> WalletWriteOut:
    """Start recovering a lost wallet to `wallet` (signed by it; DATA_STEWARD of the organisation
    that registered the customer). It completes only after the delay, unless the current
    wallet cancels."""
    written = wallets.start_recovery(
        _actor(request.caller),
        customer_id,
        wallet=body.wallet,
        deadline=body.deadline,
        signature=body.signature,
        idempotency_key=request.idempotency_key,
    )
    return _answer(written, request)


@router.get("/{customer_id}/wallet/recovery/cancellation/typed-data", response_model=TypedDataOut)
def cancellation_typed_data(
    customer_id: CustomerId, caller: CallerDep, wallets: WalletsDep
) -> TypedDataOut:
    """`CancelWalletRecovery`, which the current wallet signs to stop the pending recovery."""
    return TypedDataOut.model_validate(wallets.cancel_typed_data(_actor(caller), customer_id))


@router.post(
    "/{customer_id}/wallet/recovery/cancellation", response_model=WalletWriteOut, status_code=202
)
def cancel_wallet_recovery(
    customer_id: CustomerId, body: WalletCancellationIn, request: WriteDep, wallets: WalletsDep
) -> WalletWriteOut:
    """Carry the current wallet's signed cancellation of the pending recovery."""
    written = wallets.cancel_recovery(
        _actor(request.caller),
        customer_id,
        deadline=body.deadline,
        signature=body.signature,
        idempotency_key=request.idempotency_key,
    )
    return _answer(written, request)


@router.post(
    "/{customer_id}/wallet/recovery/completion", response_model=WalletWriteOut, status_code=202
)
def complete_wallet_recovery(
    customer_id: CustomerId, request: WriteDep, wallets: WalletsDep
) -> WalletWriteOut:
    """Complete the pending recovery once its delay has passed."""
    written = wallets.complete_recovery(
        _actor(request.caller), customer_id, idempotency_key=request.idempotency_key
    )
    return _answer(written, request)
