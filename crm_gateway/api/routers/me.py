"""`/v1/me/...`: the signed-in customer's own data, consents, access log, loyalty and export.

Sign-in is Sign-In with Ethereum (EIP-4361) by the customer's registered wallet; the session is
a cookie (`api.sessions`), never an API key. The portal at `/portal/` is the page that uses these.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from crm_gateway.api.errors import Unauthorized, problem_responses
from crm_gateway.api.routers.audit import get_audit_service
from crm_gateway.api.routers.consents import ConsentReceiptOut, SignedChangeIn
from crm_gateway.api.routers.erasure import ErasureDep, ErasureRequestOut
from crm_gateway.api.routers.loyalty import get_loyalty_service
from crm_gateway.api.routers.operations import OperationOut
from crm_gateway.api.schemas import MAX_STORED_INT, Bytes32Hex, StrictModel, TypedDataOut
from crm_gateway.api.services import (
    RuntimeDep,
    consent_service,
    customer_service,
    operation_service,
)
from crm_gateway.api.sessions import (
    PortalSessionDep,
    clear_session_cookie,
    nonce_store,
    session_store,
    set_session_cookie,
)
from crm_gateway.security.sessions import WebSession
from crm_gateway.services.portal import Me, PortalService

# 401: no portal session (or a refused sign-in); 403: a write without its CSRF token, or a wallet
# that is not (or no longer) the customer's.
router = APIRouter(
    prefix="/v1/me", tags=["me (customer portal)"], responses=problem_responses(401, 403)
)


def get_portal_service(runtime: RuntimeDep) -> PortalService:
    settings = runtime.settings
    return PortalService(
        sessions=runtime.session_factory,
        contracts=runtime.contracts,
        read_model=runtime.read_model,
        consent=consent_service(runtime),
        customers=customer_service(runtime),
        audit=get_audit_service(runtime),
        loyalty=get_loyalty_service(runtime),
        operations=operation_service(runtime),
        gateway_org_id=settings.gateway_org_id,
        relayer=runtime.portal_relayer,
        wait_for_block=runtime.index_worker.wait_for_block if settings.indexer_enabled else None,
        wait_timeout=settings.wait_timeout_seconds,
    )


PortalDep = Annotated[PortalService, Depends(get_portal_service)]


def _me(session: PortalSessionDep, portal: PortalDep) -> Me:
    me = Me(session.subject, session.wallet or "")
    if not portal.still_bound(me):
        raise Unauthorized(
            "the wallet that signed in is no longer the customer's; sign in again",
            headers={"WWW-Authenticate": "Cookie"},
        )
    return me


MeDep = Annotated[Me, Depends(_me)]


# --- sign-in -------------------------------------------------------------------------------


class SignInRequestOut(BaseModel):
    """What the wallet's Sign-In with Ethereum message must say (EIP-4361 fields)."""

    domain: str
    uri: str
    chain_id: int
    nonce: str = Field(description="One-time; spent by the first sign-in that names it")
    issued_at: datetime
    expiration_time: datetime
    statement: str


class SignInIn(StrictModel):
    message: str = Field(min_length=1, max_length=4096, description="The EIP-4361 message")
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="personal_sign, hex")


class SessionOut(BaseModel):
    customer_id: str
    wallet: str
    csrf_token: str = Field(description="Send it in `X-CSRF-Token` with every write")


STATEMENT = "Sign in to your privacy portal. This signature costs nothing and moves no funds."


@router.get("/session/nonce", response_model=SignInRequestOut)
def sign_in_request(request: Request, runtime: RuntimeDep) -> SignInRequestOut:
    """A one-time nonce and the domain, URI, chain and expiry the sign-in message must name."""
    settings = runtime.settings
    now = datetime.now(UTC).replace(microsecond=0)
    return SignInRequestOut(
        domain=settings.origin.split("://", 1)[1],
        uri=settings.origin + "/portal/",
        chain_id=runtime.contracts.chain.chain_id,
        nonce=nonce_store(request).issue(),
        issued_at=now,
        expiration_time=now + timedelta(seconds=min(300, settings.siwe_max_lifetime_seconds)),
        statement=STATEMENT,
    )


@router.post("/session", response_model=SessionOut)
def sign_in(
    body: SignInIn, request: Request, response: Response, runtime: RuntimeDep, portal: PortalDep
) -> SessionOut:
    """Sign in with the customer's registered wallet; sets the HttpOnly session cookie."""
    me = portal.sign_in(
        body.message,
        body.signature,
        origin=runtime.settings.origin,
        nonces=nonce_store(request),
        max_lifetime_seconds=runtime.settings.siwe_max_lifetime_seconds,
    )
    session = session_store(request).create("portal", me.customer_id, wallet=me.wallet)
    set_session_cookie(response, runtime.settings, "portal", session)
    return SessionOut(customer_id=me.customer_id, wallet=me.wallet, csrf_token=session.csrf_token)


@router.get("/session", response_model=SessionOut)
def current_session(session: PortalSessionDep, _me: MeDep) -> SessionOut:
    """The signed-in customer and the session's CSRF token (for a page that reloads)."""
    return _session_out(session)


@router.delete("/session", status_code=204, response_class=Response)
def sign_out(request: Request, session: PortalSessionDep) -> Response:
    """End the session."""
    session_store(request).end(session.id)
    response = Response(status_code=204)
    clear_session_cookie(response, "portal")
    return response


def _session_out(session: WebSession) -> SessionOut:
    return SessionOut(
        customer_id=session.subject, wallet=session.wallet or "", csrf_token=session.csrf_token
    )


# --- what is held --------------------------------------------------------------------------


class HoldingOrgOut(BaseModel):
    org_id: int
    name: str
    record_version: int
    is_this_gateway: bool


class OwnRecordOut(BaseModel):
    version: int
    profile: dict[str, Any]


class OverviewOut(BaseModel):
    customer_id: str
    wallet: str
    gateway_org_id: int
    organisations: list[HoldingOrgOut]
    record: OwnRecordOut


@router.get("", response_model=OverviewOut)
def overview(me: MeDep, portal: PortalDep) -> dict[str, Any]:
    """The organisations that hold me, and this organisation's record of me (logged)."""
    return portal.overview(me)


class MyExportOut(BaseModel):
    """Everything held about the customer here (GDPR Art. 15 and 20), as the file downloaded."""

    model_config = ConfigDict(extra="allow")

    customer_id: str
    consents: dict[str, Any] = Field(description="Current consents and every change")


@router.get(
    "/export",
    response_model=MyExportOut,
    responses={200: {"content": {"application/json": {}}, "description": "A file download"}},
)
def export(me: MeDep, portal: PortalDep) -> Response:
    """Everything held about me here, as a JSON file (GDPR Art. 15 and 20); logged."""
    body = json.dumps(portal.export(me), indent=2, sort_keys=True, default=str)
    name = f"my-data-{me.customer_id[2:12]}.json"
    return Response(
        body,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# --- consents ------------------------------------------------------------------------------


class ConsentChangeOut(BaseModel):
    purpose_id: str
    org_id: int
    granted: bool
    purpose_version: int
    expires_at: str | None
    nonce: int
    receipt_id: str
    how_expressed: str
    submitter: str
    block_number: int
    tx_hash: str
    log_index: int
    time: str


class ConsentItemOut(BaseModel):
    purpose_id: str
    org_id: int
    org_name: str
    controller_org: int
    notice_version: int
    purpose_active: bool = Field(description="False once the controller retired the purpose")
    notice_hash: str
    granted: bool
    reason: str | None
    receipt_id: str | None
    history: list[ConsentChangeOut]


class ConsentsOut(BaseModel):
    customer_id: str
    as_of_block: int | None
    items: list[ConsentItemOut]


@router.get("/consents", response_model=ConsentsOut)
def my_consents(me: MeDep, portal: PortalDep) -> dict[str, Any]:
    """My consent per organisation and purpose, with notice version, history and receipts."""
    return portal.consents(me)


@router.get("/consents/typed-data", response_model=TypedDataOut)
def my_consent_typed_data(
    me: MeDep,
    portal: PortalDep,
    purpose_id: Annotated[Bytes32Hex, Query()],
    org_id: Annotated[int, Query(ge=1, le=MAX_STORED_INT)],
    granted: Annotated[bool, Query()],
) -> TypedDataOut:
    """The EIP-712 typed data for my wallet to sign (`eth_signTypedData_v4`)."""
    return TypedDataOut.model_validate(portal.consent_typed_data(me, purpose_id, org_id, granted))


@router.post("/consents", response_model=OperationOut)
def relay_my_consent(body: SignedChangeIn, me: MeDep, portal: PortalDep) -> OperationOut:
    """Relay a change my wallet signed; answers once it is mined and indexed (CSRF token)."""
    return OperationOut.of(portal.relay_consent(me, body.change()))


@router.get("/consents/receipts/{receipt_id}", response_model=ConsentReceiptOut)
def my_receipt(
    receipt_id: Annotated[Bytes32Hex, Path()],
    me: MeDep,
    portal: PortalDep,
    download: Annotated[bool, Query(description="As a file download")] = False,
) -> Response:
    """The ISO/IEC TS 27560 consent receipt of one change, with the on-chain event proving it."""
    body = json.dumps(portal.receipt(me, receipt_id), indent=2)
    headers = (
        {"Content-Disposition": f'attachment; filename="consent-receipt-{receipt_id[2:14]}.json"'}
        if download
        else {}
    )
    return Response(body, media_type="application/json", headers=headers)


# --- who used my data ------------------------------------------------------------------------


class AccessEntryOut(BaseModel):
    seq: int
    at: str
    at_canonical: str = Field(description="The time exactly as hashed into the entry")
    api_key_id: str | None
    org_id: int | None
    account: str | None
    customer_id: str | None
    purpose: str | None
    action: str
    decision: str
    reason: str | None
    prev_hash: str | None
    entry_hash: str | None
    role: str | None = Field(description="The role of the API key that made the access")
    anchor_proof: dict[str, Any] | None = Field(
        description="The entry's Merkle proof and anchoring batch (null until anchored)"
    )


class AccessLogOut(BaseModel):
    customer_id: str
    org_id: int
    hash_version: str
    chain_id: int
    anchor_contract: str
    entries: list[AccessEntryOut]


@router.get("/access-log", response_model=AccessLogOut)
def my_access_log(me: MeDep, portal: PortalDep) -> dict[str, Any]:
    """Who used my data: every access-log entry about me, each with its inclusion proof."""
    return portal.access_log(me)


# --- loyalty -------------------------------------------------------------------------------


class LoyaltyOut(BaseModel):
    available: bool
    reason: str | None
    balance: dict[str, Any] | None
    movements: list[dict[str, Any]]


@router.get("/loyalty", response_model=LoyaltyOut)
def my_loyalty(me: MeDep, portal: PortalDep) -> dict[str, Any]:
    """My loyalty points balance and history."""
    return portal.loyalty(me)


# --- erasure (GDPR Art. 17) ----------------------------------------------------------------


class ErasureIn(StrictModel):
    requested_at: int = Field(ge=0, le=2**64 - 1, description="`requestedAt` of the typed data")
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$", description="eth_signTypedData_v4")


def _signed_in(session: PortalSessionDep) -> Me:
    """The session's customer, even once erased (and so no longer bound to the wallet): the
    erasure requests stay visible to the session that made them."""
    return Me(session.subject, session.wallet or "")


@router.get("/erasure-requests/typed-data", response_model=TypedDataOut)
def erasure_typed_data(me: MeDep, erasure: ErasureDep) -> TypedDataOut:
    """The EIP-712 typed data my wallet signs to ask this organisation to erase me."""
    return TypedDataOut.model_validate(erasure.typed_data(me.customer_id))


@router.post("/erasure-requests", response_model=ErasureRequestOut, status_code=201)
def request_erasure(body: ErasureIn, me: MeDep, erasure: ErasureDep) -> dict[str, Any]:
    """Ask for erasure with my wallet's signature; the organisation carries it out or refuses."""
    return erasure.request(me.customer_id, me.wallet, body.requested_at, body.signature)


@router.get("/erasure-requests", response_model=list[ErasureRequestOut])
def my_erasure_requests(
    me: Annotated[Me, Depends(_signed_in)], erasure: ErasureDep
) -> list[dict[str, Any]]:
    """My erasure requests and where each one stands (done, or refused with the reason)."""
    return erasure.of_customer(me.customer_id)


# Wallet rotation (signed by the current wallet and the new one) belongs here, as
# `POST /v1/me/wallet`, once the registry's rotation (issue 11) is merged: the page has a section
# for it, and `PortalService.still_bound` already ends the old wallet's sessions.
