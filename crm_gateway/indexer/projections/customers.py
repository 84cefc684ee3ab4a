"""Customer identities of the CustomerRegistry: status, wallet, holders with their versions."""

from __future__ import annotations

from collections.abc import Hashable

from sqlalchemy import delete, insert, update
from sqlalchemy.orm import Session

from crm_gateway.indexer.events import IndexedEvent
from crm_gateway.indexer.projections.base import Projection, handles
from crm_gateway.store.models import CustomerStatus, RmCustomer, RmCustomerHolder

CUSTOMER_REGISTRY = "CustomerRegistry"


class CustomersProjection(Projection):
    """`rm_customers` (one row per customer id: status, linked wallet, next wallet-link nonce)
    and `rm_customer_holders` (one row per holder organisation: version and commitment), as the
    registry's `customer`, `holding` and `walletNonce` views answer.

    Every event names its customer, so a rebuild after a reorg recomputes only the customers
    whose events were removed (`key_of` is the customer id). RegistrationSkipped changes nothing.
    """

    name = "customers"
    tables = (RmCustomerHolder, RmCustomer)

    def key_of(self, event: IndexedEvent) -> Hashable | None:
        return str(event.args["customerId"])

    def forget(self, session: Session, keys: set[Hashable]) -> None:
        ids = sorted(str(k) for k in keys)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            session.execute(delete(RmCustomerHolder).where(RmCustomerHolder.customer_id.in_(chunk)))
            session.execute(delete(RmCustomer).where(RmCustomer.customer_id.in_(chunk)))

    @staticmethod
    def _touch(session: Session, event: IndexedEvent, **values: object) -> None:
        session.execute(
            update(RmCustomer)
            .where(RmCustomer.customer_id == event.args["customerId"])
            .values(updated_block=event.block_number, **values)
        )

    @handles(CUSTOMER_REGISTRY, "CustomerRegistered", "HolderJoined")
    def holder_added(self, session: Session, event: IndexedEvent) -> None:
        customer_id = event.args["customerId"]
        if event.event == "CustomerRegistered":
            session.execute(
                insert(RmCustomer).values(
                    customer_id=customer_id,
                    status=CustomerStatus.ACTIVE,
                    wallet=None,
                    wallet_nonce=0,
                    registered_block=event.block_number,
                    updated_block=event.block_number,
                )
            )
        else:
            self._touch(session, event)
        session.execute(
            insert(RmCustomerHolder).values(
                customer_id=customer_id,
                org_id=int(event.args["orgId"]),
                version=1,
                commitment=event.args["commitment"],
                updated_block=event.block_number,
            )
        )

    @handles(CUSTOMER_REGISTRY, "CommitmentUpdated")
    def commitment_updated(self, session: Session, event: IndexedEvent) -> None:
        session.execute(
            update(RmCustomerHolder)
            .where(
                RmCustomerHolder.customer_id == event.args["customerId"],
                RmCustomerHolder.org_id == int(event.args["orgId"]),
            )
            .values(
                version=int(event.args["version"]),
                commitment=event.args["commitment"],
                updated_block=event.block_number,
            )
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

    @handles(CUSTOMER_REGISTRY, "WalletUnlinked")
    def wallet_unlinked(self, session: Session, event: IndexedEvent) -> None:
        self._touch(session, event, wallet=None)

    @handles(CUSTOMER_REGISTRY, "HoldingErased")
    def holding_erased(self, session: Session, event: IndexedEvent) -> None:
        session.execute(
            delete(RmCustomerHolder).where(
                RmCustomerHolder.customer_id == event.args["customerId"],
                RmCustomerHolder.org_id == int(event.args["orgId"]),
            )
        )
        self._touch(session, event)

    @handles(CUSTOMER_REGISTRY, "CustomerErased")
    def customer_erased(self, session: Session, event: IndexedEvent) -> None:
        self._touch(session, event, status=CustomerStatus.ERASED)


__all__ = ["CUSTOMER_REGISTRY", "CustomersProjection"]
