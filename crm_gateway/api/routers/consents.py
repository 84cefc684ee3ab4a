"""Consent: purposes, signed changes relayed to the chain, checks, history, receipts, audiences."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from eth_utils.crypto import keccak
from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from crm_gateway.api.deps import Caller, CallerDep
from crm_gateway.api.routers.loyalty import LoyaltyDep
from crm_gateway.api.routers.operations import OperationOut, WriteDep
from crm_gateway.api.schemas import (
    MAX_STORED_INT,
    Bytes32Hex,
    OrgIdField,
    OrgIdQuery,
    StrictModel,
    TypedDataOut,
)
from crm_gateway.api.services import ConsentDep
from crm_gateway.services.consent import LawfulBasis, SignedChange
from crm_gateway.services.consent_access import ConsentReader
from crm_gateway.services.errors import DomainError

router = APIRouter(tags=["consent"])

Purpose = Annotated[
    str,
    Query(
        min_length=1,
        max_length=66,
        description="A purpose slug like `marketing.email`, or its 32-byte id",
    ),
]
OrgId = OrgIdQuery
Uint64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
Uint256 = Annotated[int, Field(ge=0, le=2**256 - 1)]
Signature = Annotated[
    str, Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="65-byte signature, hex")
]


class PurposeIn(StrictModel):
    purpose: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.:-]*$")
    lawful_basis: LawfulBasis
    notice_hash: Bytes32Hex | None = Field(
        default=None, description="keccak256 of the notice text (or give `notice_text`)"
    )
    notice_text: str | None = Field(default=None, min_length=1, max_length=100_000)

    def hash(self) -> str:
        if (self.notice_hash is None) == (self.notice_text is None):
            raise DomainError("give exactly one of notice_hash or notice_text", field="notice_hash")
        return self.notice_hash or "0x" + keccak(text=self.notice_text or "").hex()


class NoticeIn(StrictModel):
    notice_hash: Bytes32Hex | None = None
    notice_text: str | None = Field(default=None, min_length=1, max_length=100_000)


class SignedChangeIn(StrictModel):
    customer_id: Bytes32Hex
    purpose_id: Bytes32Hex
    purpose_version: Uint64 = Field(
        description="The notice version the customer was shown (a grant needs the current one)"
    )
    org_id: OrgIdField
    granted: bool
    expires_at: Uint64 = 0
    nonce: Uint256
    deadline: Uint256
    signature: Signature

    def change(self) -> SignedChange:
        return SignedChange(
            self.customer_id,
            self.purpose_id.lower(),
            self.purpose_version,
            self.org_id,
            self.granted,
            self.expires_at,
            self.nonce,
            self.deadline,
            self.signature,
        )


class SignedChangesIn(StrictModel):
    changes: list[SignedChangeIn] = Field(min_length=1, max_length=500)


class RawTransactionIn(StrictModel):
    raw: str = Field(pattern=r"^0x([0-9a-fA-F]{2})+$", max_length=262_144)


class RawTransactionOut(BaseModel):
    tx_hash: str


class ConsentCheckOut(BaseModel):
    granted: bool
    expires_at: str | None
    as_of_block: int | None
    reason: str | None = None
    consistency: str


class PurposeOut(BaseModel):
    purpose_id: str
    controller_org: int
    version: int = Field(description="The notice version")
    notice_hash: str
    lawful_basis: LawfulBasis
    active: bool


class ConsentHistoryOut(BaseModel):
    customer_id: str
    as_of_block: int | None
    current: list[dict[str, Any]] = Field(
        description="Per purpose and processor: the live decision and its receipt id"
    )
    history: list[dict[str, Any]] = Field(
        description="Every change, oldest first: block, tx hash, time, how expressed"
    )


class ConsentReceiptOut(BaseModel):
    """The fields of ISO/IEC TS 27560 (`crm_gateway/schemas/consent_receipt.schema.json`)."""

    model_config = ConfigDict(extra="allow")

    schema_version: str
    record_id: str
    data_subject: dict[str, Any]
    controller: dict[str, Any]
    processor: dict[str, Any]
    purpose: dict[str, Any]
    lawful_basis: str
    notice: dict[str, Any]
    event: dict[str, Any]
    proof: dict[str, Any]


class AudienceOut(BaseModel):
    purpose_id: str
    org_id: int
    as_of_block: int | None
    customer_ids: list[str]


# The hottest route comes first: routes are matched one by one, in order.
@router.get("/v1/consents/check", response_model=ConsentCheckOut)
async def check_consent(
    _caller: CallerDep,
    consent: ConsentDep,
    customer: Annotated[Bytes32Hex, Query()],
    purpose: Purpose,
    org: OrgId,
    consistency: Annotated[Literal["read_model", "chain"], Query()] = "read_model",
) -> Response:
    """Whether the customer consents now (read model, or the contract with consistency=chain)."""
    # On SQLite the read model is read right here, on the event loop (one prepared statement on
    # a connection of its own), which costs less than the hand-off to the thread pool that a
    # chain call or a server database's round trip needs.
    result = consent.check_locally(customer, purpose, org) if consistency == "read_model" else None
    if result is None:
        result = await run_in_threadpool(
            consent.check, customer, purpose, org, consistency=consistency
        )
    # Serialised once, here: a returned Response skips FastAPI's second validation of the model.
    answer = ConsentCheckOut.model_validate(result)
    return Response(answer.model_dump_json(), media_type="application/json")


class ProcessingCheckOut(BaseModel):
    allowed: bool
    answer: Literal[
        "allowed", "unknown_purpose", "purpose_retired", "purpose_not_shared", "no_live_consent"
    ]
    as_of_block: int | None
    consistency: str


@router.get("/v1/processing/check", response_model=ProcessingCheckOut)
def check_processing(
    _caller: CallerDep,
    consent: ConsentDep,
    customer: Annotated[Bytes32Hex, Query()],
    purpose: Purpose,
    org: OrgId,
    consistency: Annotated[Literal["read_model", "chain"], Query()] = "read_model",
) -> ProcessingCheckOut:
    """Whether organisation `org` may process the customer's data under the purpose now (the
    rule `GET /v1/customers/{id}?purpose=` enforces): the purpose active and controlled by or
    shared with `org`, and a live consent when its basis is consent. From the read model, or
    the contract's `mayProcess` with consistency=chain."""
    answer = consent.may_process(customer, purpose, org, consistency=consistency)
    return ProcessingCheckOut.model_validate({**answer, "consistency": consistency})


class PurposeShareIn(StrictModel):
    org_id: OrgIdField


@router.post("/v1/purposes/{purpose}/shares", response_model=OperationOut, status_code=202)
def share_purpose(
    purpose: Annotated[str, Path(max_length=66)],
    body: PurposeShareIn,
    request: WriteDep,
    consent: ConsentDep,
) -> OperationOut:
    """Let another organisation use your purpose (ORG_ADMIN of its controller)."""
    write = consent.share_purpose(request.caller.account, purpose, body.org_id)
    return request.answer(write, {"purpose": purpose, "org_id": body.org_id})


@router.delete(
    "/v1/purposes/{purpose}/shares/{org_id}", response_model=OperationOut, status_code=202
)
def unshare_purpose(
    purpose: Annotated[str, Path(max_length=66)],
    org_id: Annotated[int, Path(ge=1, le=MAX_STORED_INT)],
    request: WriteDep,
    consent: ConsentDep,
) -> OperationOut:
    """Stop letting an organisation use your purpose (ORG_ADMIN of its controller)."""
    write = consent.unshare_purpose(request.caller.account, purpose, org_id)
    return request.answer(write, {"purpose": purpose, "org_id": org_id, "unshare": True})


@router.post("/v1/purposes/{purpose}/retirement", response_model=OperationOut, status_code=202)
def retire_purpose(
    purpose: Annotated[str, Path(max_length=66)], request: WriteDep, consent: ConsentDep
) -> OperationOut:
    """Retire your purpose for good: no read under it is allowed any more (ORG_ADMIN)."""
    write = consent.retire_purpose(request.caller.account, purpose)
    return request.answer(write, {"purpose": purpose, "retire": True})


@router.get("/v1/purposes", tags=["consent"], response_model=list[PurposeOut])
def list_purposes(_caller: CallerDep, consent: ConsentDep) -> list[PurposeOut]:
    """Registered processing purposes with their lawful basis and notice version."""
    return [PurposeOut.model_validate(p) for p in consent.purposes()]


@router.post("/v1/purposes", response_model=OperationOut, status_code=202)
def define_purpose(body: PurposeIn, request: WriteDep, consent: ConsentDep) -> OperationOut:
    """Register a purpose; your organisation becomes its controller (ORG_ADMIN)."""
    write = consent.define_purpose(
        request.caller.account, body.purpose, body.hash(), body.lawful_basis
    )
    return request.answer(write, body.model_dump(mode="json"))


@router.post("/v1/purposes/{purpose}/notice", response_model=OperationOut, status_code=202)
def update_notice(
    purpose: Annotated[str, Path(max_length=66)],
    body: NoticeIn,
    request: WriteDep,
    consent: ConsentDep,
) -> OperationOut:
    """A new notice version: consent given to earlier versions stops counting."""
    holder = PurposeIn(purpose="x", lawful_basis=LawfulBasis.CONSENT, **body.model_dump())
    write = consent.update_notice(request.caller.account, purpose, holder.hash())
    return request.answer(write, {"purpose": purpose, **body.model_dump(mode="json")})


@router.get("/v1/consents/typed-data", response_model=TypedDataOut)
def consent_typed_data(
    _caller: CallerDep,
    consent: ConsentDep,
    customer: Annotated[Bytes32Hex, Query()],
    purpose: Purpose,
    org: OrgId,
    granted: Annotated[bool, Query()],
    expiry: Annotated[int, Query(ge=0, le=2**64 - 1, description="Unix time; 0 = none")] = 0,
) -> TypedDataOut:
    """The EIP-712 typed data (eth_signTypedData_v4) a wallet signs, with nonce and deadline."""
    return TypedDataOut.model_validate(consent.typed_data(customer, purpose, org, granted, expiry))


@router.post("/v1/consents", response_model=OperationOut, status_code=202)
def relay_consents(
    body: SignedChangeIn | SignedChangesIn, request: WriteDep, consent: ConsentDep
) -> OperationOut:
    """Relay one signed change, or `{"changes": [...]}`, to the chain (RELAYER key)."""
    items = body.changes if isinstance(body, SignedChangesIn) else [body]
    write = consent.relay(request.caller.account, [item.change() for item in items])
    return request.answer(write, body.model_dump(mode="json"))


@router.post("/v1/transactions/raw", response_model=RawTransactionOut, status_code=202)
def broadcast_raw(
    body: RawTransactionIn, _caller: CallerDep, consent: ConsentDep, loyalty: LoyaltyDep
) -> RawTransactionOut:
    """Broadcast a customer's own signed transaction from their registered wallet: `setConsent`
    to the ConsentLedger, or `transfer`, `transferFrom`, `approve` or `permit` to the loyalty
    token (as `POST /v1/loyalty/transfer`)."""
    raw = bytes.fromhex(body.raw[2:])
    if loyalty.is_token_transaction(raw):
        return RawTransactionOut(tx_hash=loyalty.broadcast_raw(raw))
    return RawTransactionOut(tx_hash=consent.broadcast_raw(raw))


@router.get("/v1/consents/{customer}", response_model=ConsentHistoryOut)
def consent_history(
    customer: Annotated[Bytes32Hex, Path()], caller: CallerDep, consent: ConsentDep
) -> ConsentHistoryOut:
    """Current consents and the history (block, tx hash, time, how expressed) that concern your
    organisation: its purposes, or it as the processor (DATA_STEWARD, AGENT, AUDITOR)."""
    return ConsentHistoryOut.model_validate(consent.history(_reader(caller), customer))


@router.get("/v1/consents/{customer}/receipts/{receipt_id}", response_model=ConsentReceiptOut)
def consent_receipt(
    customer: Annotated[Bytes32Hex, Path()],
    receipt_id: Annotated[Bytes32Hex, Path()],
    caller: CallerDep,
    consent: ConsentDep,
) -> ConsentReceiptOut:
    """A consent receipt with the fields of ISO/IEC TS 27560 and the on-chain event proving it
    (as the history: your organisation's consents only)."""
    return ConsentReceiptOut.model_validate(consent.receipt(_reader(caller), customer, receipt_id))


@router.get("/v1/marketing/audience", response_model=AudienceOut)
def marketing_audience(
    caller: CallerDep, consent: ConsentDep, purpose: Purpose, org: OrgId
) -> AudienceOut:
    """The customer ids that may be contacted for this purpose by this organisation now
    (a MARKETER of that organisation)."""
    return AudienceOut.model_validate(consent.audience(_reader(caller), purpose, org))


def _reader(caller: Caller) -> ConsentReader:
    return ConsentReader(org_id=caller.org_id, account=caller.account)
