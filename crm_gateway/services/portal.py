"""The customer's own view and actions (`/portal/`, `/v1/me/...`), for a signed-in wallet.

A portal session is bound to the customer whose registered wallet signed in (Sign-In with
Ethereum, `security.siwe`); every request checks the wallet is still the customer's (a rotated
wallet's sessions end at once). Nothing here decides for the customer: a consent change is typed
data the customer's wallet signs in the browser, checked and relayed by `ConsentService.relay`
exactly as a relayer's API request is, from this gateway's RELAYER account.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from eth_utils.address import to_checksum_address
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.audit.anchoring import ANCHOR_CONTRACT
from crm_gateway.chain.contracts import Contracts
from crm_gateway.indexer.read_model import ReadModel
from crm_gateway.security import siwe
from crm_gateway.security.sessions import NonceStore
from crm_gateway.services.audit import AuditService, NotAnchoredError, entry_json
from crm_gateway.services.consent import ConsentService, SignedChange
from crm_gateway.services.customers import CustomerService
from crm_gateway.services.errors import (
    DomainError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from crm_gateway.services.loyalty import LoyaltyService
from crm_gateway.services.operations import OperationService, OperationView
from crm_gateway.store import audit as log_store
from crm_gateway.store import customers as store
from crm_gateway.store.models import ApiKey

REGISTRY = "CustomerRegistry"
_NO_CUSTOMER = b"\0" * 32


@dataclass(frozen=True)
class Me:
    """The signed-in customer and the wallet that signed in."""

    customer_id: str
    wallet: str


class PortalService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        contracts: Contracts,
        read_model: ReadModel,
        consent: ConsentService,
        customers: CustomerService,
        audit: AuditService,
        loyalty: LoyaltyService,
        operations: OperationService,
        gateway_org_id: int,
        relayer: Callable[[], str | None],
        wait_for_block: Callable[[int, float], bool] | None,
        wait_timeout: float,
    ) -> None:
        self._sessions = sessions
        self._contracts = contracts
        self._read_model = read_model
        self._consent = consent
        self._customers = customers
        self._audit = audit
        self._loyalty = loyalty
        self._operations = operations
        self._org_id = gateway_org_id
        self._relayer = relayer
        self._wait_for_block = wait_for_block
        self._wait_timeout = wait_timeout

    # --- who is signed in -------------------------------------------------------------------

    def customer_of(self, wallet: str) -> str:
        """The customer whose registered wallet `wallet` is (asked of the registry contract),
        if this gateway's organisation holds them; otherwise a refusal."""
        raw = bytes(
            self._contracts[REGISTRY].functions.customerOfWallet(to_checksum_address(wallet)).call()
        )
        if raw == _NO_CUSTOMER:
            raise PermissionDeniedError(f"{wallet} is not a customer's registered wallet")
        customer_id = "0x" + raw.hex()
        with self._sessions() as session:
            record = store.get_record(session, customer_id)
        if record is None or record.org_id != self._org_id:
            raise PermissionDeniedError(
                f"organisation {self._org_id} holds no customer with the wallet {wallet}"
            )
        return customer_id

    def sign_in(
        self,
        text: str,
        signature: str,
        *,
        origin: str,
        nonces: NonceStore,
        max_lifetime_seconds: int,
    ) -> Me:
        """The customer a Sign-In with Ethereum message signs in: it names this gateway (domain,
        URI, chain), is in its time window, carries a nonce issued here and never used (spent
        now, whatever the outcome), and was signed by a customer's registered wallet."""
        try:
            message = siwe.verify(
                text,
                signature,
                domain=urlsplit(origin).netloc,
                uri=origin + "/portal/",
                chain_id=self._contracts.chain.chain_id,
                now=datetime.now(UTC),
                max_lifetime_seconds=max_lifetime_seconds,
            )
        except siwe.SiweError as exc:
            raise SignInRefusedError(str(exc)) from exc
        if not nonces.consume(message.nonce):
            raise SignInRefusedError("the nonce was not issued here, or was used or expired")
        return Me(self.customer_of(message.address), message.address)

    def still_bound(self, me: Me) -> bool:
        """Whether `me.wallet` is still the customer's wallet (the read model's view).

        Wallet rotation (signed by the current wallet, issue 11) changes it on-chain; from the
        block the indexer sees it, every session of the old wallet is refused here.
        """
        found = self._read_model.customer(me.customer_id)
        return found is not None and found.wallet == to_checksum_address(me.wallet)

    # --- what is held -----------------------------------------------------------------------

    def overview(self, me: Me) -> dict[str, Any]:
        """The organisations that hold the customer, and this organisation's record of them."""
        found = self._read_model.customer(me.customer_id)
        names = {o.org_id: o.name for o in self._read_model.organizations()}
        holders = sorted(found.holders.values(), key=lambda h: h.org_id) if found else []
        record = self._customers.own_record(me.customer_id, me.wallet)
        return {
            "customer_id": me.customer_id,
            "wallet": me.wallet,
            "gateway_org_id": self._org_id,
            "organisations": [
                {
                    "org_id": h.org_id,
                    "name": names.get(h.org_id, f"organisation {h.org_id}"),
                    "record_version": h.version,
                    "is_this_gateway": h.org_id == self._org_id,
                }
                for h in holders
            ],
            "record": record,
        }

    def export(self, me: Me) -> dict[str, Any]:
        """Everything held about the customer here, portable (GDPR Art. 15 and 20)."""
        exported = self._customers.own_export(me.customer_id, me.wallet)
        exported["consents"] = self._consent.own_history(me.customer_id)
        return exported

    # --- consents ---------------------------------------------------------------------------

    def consents(self, me: Me) -> dict[str, Any]:
        """Each (organisation, purpose) the customer may decide about, with the current state,
        the notice version and every change with its receipt id."""
        history = self._consent.own_history(me.customer_id)
        current = {(c["purpose_id"], c["org_id"]): c for c in history["current"]}
        found = self._read_model.customer(me.customer_id)
        orgs = sorted(found.holders) if found else []
        names = {o.org_id: o.name for o in self._read_model.organizations()}
        items = []
        for purpose in self._read_model.purposes():
            if purpose.basis != "consent":
                continue
            for org_id in orgs:
                state = current.get((purpose.purpose_id, org_id))
                # A retired purpose stays listed where the customer decided about it: a consent
                # given must remain possible to withdraw (GDPR Art. 7(3)).
                if not purpose.active and state is None:
                    continue
                items.append(
                    {
                        "purpose_id": purpose.purpose_id,
                        "org_id": org_id,
                        "org_name": names.get(org_id, f"organisation {org_id}"),
                        "controller_org": purpose.controller_org,
                        "notice_version": purpose.version,
                        "purpose_active": purpose.active,
                        "notice_hash": purpose.notice_hash,
                        "granted": bool(state and state["granted"]),
                        "reason": None if state is None else state["reason"],
                        "receipt_id": None if state is None else state["receipt_id"],
                        "history": [
                            h
                            for h in history["history"]
                            if (h["purpose_id"], h["org_id"]) == (purpose.purpose_id, org_id)
                        ],
                    }
                )
        return {
            "customer_id": me.customer_id,
            "as_of_block": history["as_of_block"],
            "items": items,
        }

    def receipt(self, me: Me, receipt_id: str) -> dict[str, Any]:
        return self._consent.own_receipt(me.customer_id, receipt_id)

    def consent_typed_data(
        self, me: Me, purpose_id: str, org_id: int, granted: bool
    ) -> dict[str, Any]:
        """The typed data the customer's wallet signs (`eth_signTypedData_v4`)."""
        return self._consent.typed_data(me.customer_id, purpose_id, org_id, granted, 0)

    def relay_consent(self, me: Me, change: SignedChange) -> OperationView:
        """Relay a change the customer's wallet signed, from this gateway's RELAYER account;
        answer once it is mined and indexed (or the wait times out)."""
        if change.customer_id.lower() != me.customer_id:
            raise PermissionDeniedError("a signed-in customer relays only their own changes")
        relayer = self._relayer()
        if relayer is None:
            raise ServiceUnavailableError(
                "this gateway holds no RELAYER key to relay consent changes; set "
                "PORTAL_RELAYER_ACCOUNT or grant RELAYER to one of its keystore accounts"
            )
        write = self._consent.relay(relayer, [change])
        view, _created = self._operations.submit(
            write,
            api_key_id=None,
            idempotency_key=None,
            payload={"portal": me.customer_id, "signature": change.signature},
        )
        return self._settle(view)

    def _settle(self, view: OperationView) -> OperationView:
        deadline = time.monotonic() + self._wait_timeout
        while not view.settled and time.monotonic() < deadline:
            time.sleep(0.05)
            view = self._operations.get_internal(view.id)
        if view.block_number is not None and self._wait_for_block is not None:
            self._wait_for_block(view.block_number, self._wait_timeout)
        return view

    # --- who used my data -------------------------------------------------------------------

    def access_log(self, me: Me) -> dict[str, Any]:
        """The access-log entries about the customer, each with its Merkle inclusion proof once
        anchored (the browser checks it against `AuditAnchor`'s root through the wallet)."""
        with self._sessions() as session:
            rows = store.access_log_for(session, me.customer_id)
            entries = [entry_json(e) for e in rows]
            canonical = {int(e.seq): log_store.canonical_time(e.at) for e in rows}
            key_ids = {e.api_key_id for e in rows if e.api_key_id}
            roles = dict(
                session.execute(select(ApiKey.id, ApiKey.role).where(ApiKey.id.in_(key_ids))).all()
            )
        items = []
        for entry in entries:
            proof: dict[str, Any] | None
            try:
                proof = self._audit.proof_of(int(entry["seq"]))
            except NotAnchoredError:
                proof = None
            items.append(
                {
                    **entry,
                    "at_canonical": canonical[int(entry["seq"])],
                    "role": roles.get(entry["api_key_id"]) if entry["api_key_id"] else None,
                    "anchor_proof": proof,
                }
            )
        return {
            "customer_id": me.customer_id,
            "org_id": self._org_id,
            "hash_version": log_store.HASH_VERSION,
            "chain_id": self._contracts.chain.chain_id,
            "anchor_contract": self._contracts[ANCHOR_CONTRACT].address,
            "entries": items,
        }

    # --- loyalty ----------------------------------------------------------------------------

    def loyalty(self, me: Me) -> dict[str, Any]:
        try:
            balance = self._loyalty.balance(me.customer_id)
            history = self._loyalty.history(me.customer_id)
        except DomainError as exc:
            return {"available": False, "reason": exc.detail, "balance": None, "movements": []}
        return {
            "available": True,
            "reason": None,
            "balance": balance,
            "movements": history["movements"],
        }


class SignInRefusedError(DomainError):
    """The Sign-In with Ethereum message or its signature is not accepted."""

    status, slug, title = 401, "sign-in-refused", "Sign-in refused"
