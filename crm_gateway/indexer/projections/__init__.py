"""The read model's projections; `DEFAULT_PROJECTIONS` is what the gateway indexes.

To add one (a later issue's balances, say): write a `Projection` subclass in a module here, add its
table(s) to `store.models` with an Alembic revision, and append the class to `DEFAULT_PROJECTIONS`.
An existing database picks it up with `crm-chaincode index rebuild`.
"""

from __future__ import annotations

from crm_gateway.indexer.projections.base import (
    Handler,
    Projection,
    ProjectionRegistry,
    handles,
)
from crm_gateway.indexer.projections.consents import ConsentsProjection, PurposesProjection
from crm_gateway.indexer.projections.customers import CustomersProjection
from crm_gateway.indexer.projections.loyalty import LoyaltyProjection
from crm_gateway.indexer.projections.roles import RolesProjection

# A projection of a contract that is not deployed simply never sees an event.
DEFAULT_PROJECTIONS: list[type[Projection]] = [
    RolesProjection,
    CustomersProjection,
    PurposesProjection,
    ConsentsProjection,
    LoyaltyProjection,
]


def default_registry() -> ProjectionRegistry:
    """A registry of a fresh instance of every default projection."""
    return ProjectionRegistry(cls() for cls in DEFAULT_PROJECTIONS)


__all__ = [
    "DEFAULT_PROJECTIONS",
    "ConsentsProjection",
    "CustomersProjection",
    "Handler",
    "LoyaltyProjection",
    "Projection",
    "ProjectionRegistry",
    "PurposesProjection",
    "RolesProjection",
    "default_registry",
    "handles",
]
