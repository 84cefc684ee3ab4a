"""Customer identities of the CustomerRegistry: status, wallet, holders with their versions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.orm import Session

from crm_gateway.indexer.events import IndexedEvent
from crm_gateway.indexer.projections.base import PartitionedProjection, execute, handles, table
from crm_gateway.store.models import CustomerStatus, RmCustomer, RmCustomerHolder

CUSTOMER_REGISTRY = "CustomerRegistry"

_customers = table(RmCustomer)
_holders = table(RmCustomerHolder)

_INSERT_CUSTOMER = insert(_customers)
_INSERT_HOLDER = insert(_holders)
_UPDATE_CUSTOMER = update(_customers).where(_customers.c.customer_id == bindparam("customer"))
_UPDATE_HOLDER = update(_holders).where(
    _holders.c.customer_id == bindparam("customer"), _holders.c.org_id == bindparam("org")
)
_DELETE_HOLDER = delete(_holders).where(
    _holders.c.customer_id == bindparam("customer"), _holders.c.org_id == bindparam("org")
)


class CustomersProjection(PartitionedProjection):
    """`rm_customers` (one row per customer id: status, linked wallet, next wallet-link nonce)
    and `rm_customer_holders` (one row per holder organisation: version and commitment), as the
    registry's `customer`, `holding` and `walletNonce` views answer.

    Every event names its customer, so a rebuild after a reorg recomputes only the customers
    whose events were removed (`key_of` is the customer id). RegistrationSkipped changes nothing.
    """

    name = "customers"
    tables = (RmCustomerHolder, RmCustomer)
    partition_argument = "customerId"
    partition_column = "customer_id"

    @staticmethod
    def _touch(session: Session, event: IndexedEvent, **values: Any) -> None:
        execute(
            session,
            _UPDATE_CUSTOMER,
            {"customer": event.args["customerId"], "updated_block": event.block_number, **values},
        )

    @handles(CUSTOMER_REGISTRY, "CustomerRegistered", "HolderJoined")
    def holder_added(self, session: Session, event: IndexedEvent) -> None:
        customer_id = event.args["customerId"]
        if event.event == "CustomerRegistered":
            execute(
                session,
                _INSERT_CUSTOMER,
                {
                    "customer_id": customer_id,
                    "status": CustomerStatus.ACTIVE.value,
                    "wallet": None,
                    "wallet_nonce": 0,
                    "registered_block": event.block_number,
                    "updated_block": event.block_number,
                },
            )
        else:
            self._touch(session, event)
        execute(
            session,
            _INSERT_HOLDER,
            {
                "customer_id": customer_id,
                "org_id": int(event.args["orgId"]),
                "version": 1,
                "commitment": event.args["commitment"],
                "updated_block": event.block_number,
            },
        )

    @handles(CUSTOMER_REGISTRY, "CommitmentUpdated")
    def commitment_updated(self, session: Session, event: IndexedEvent) -> None:
        execute(
            session,
            _UPDATE_HOLDER,
            {
                "customer": event.args["customerId"],
                "org": int(event.args["orgId"]),
                "version": int(event.args["version"]),
                "commitment": event.args["commitment"],
                "updated_block": event.block_number,
            },
        )
        self._touch(session, event)

    @handles(CUSTOMER_REGISTRY, "WalletLinked")
    def wallet_linked(self, session: Session, event: IndexedEvent) -> None:
        self._touch(
            session,
            event,
            wallet=event.args["newWallet"],
            wallet_nonce=int(event.args["nonce"]) + 1,
        )

    @handles(CUSTOMER_REGISTRY, "WalletRecoveryStarted", "WalletRecoveryCancelled")
    def wallet_nonce_used(self, session: Session, event: IndexedEvent) -> None:
        """A recovery's start or cancellation consumes the wallet nonce (the wallet stays)."""
        self._touch(session, event, wallet_nonce=int(event.args["nonce"]) + 1)

    @handles(CUSTOMER_REGISTRY, "WalletUnlinked")
    def wallet_unlinked(self, session: Session, event: IndexedEvent) -> None:
        self._touch(session, event, wallet=None)

    @handles(CUSTOMER_REGISTRY, "HoldingErased")
    def holding_erased(self, session: Session, event: IndexedEvent) -> None:
        execute(
            session,
            _DELETE_HOLDER,
            {"customer": event.args["customerId"], "org": int(event.args["orgId"])},
        )
        self._touch(session, event)

    @handles(CUSTOMER_REGISTRY, "CustomerErased")
    def customer_erased(self, session: Session, event: IndexedEvent) -> None:
        self._touch(session, event, status=CustomerStatus.ERASED.value)


__all__ = ["CUSTOMER_REGISTRY", "CustomersProjection"]
