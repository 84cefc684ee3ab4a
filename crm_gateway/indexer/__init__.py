"""The indexer and the read model: contract events into the database, hot reads without the chain.

`ChainIndexer` (scanner.py) scans the chain in bounded block ranges from the lowest deployment
block, stores each decoded event once in `chain_events`, applies it to the projections
(projections/), and rewinds on a reorg; `IndexerWorker` runs it in a background thread of the
gateway; `ReadModel` answers the hot queries (roles, customers) from the projections and says
which block it is current to. `crm-chaincode index run|rebuild|status` drives it by hand.
"""

from __future__ import annotations

from crm_gateway.indexer.events import EventKey, IndexedEvent
from crm_gateway.indexer.projections import (
    DEFAULT_PROJECTIONS,
    Projection,
    ProjectionRegistry,
    default_registry,
    handles,
)
from crm_gateway.indexer.read_model import (
    CustomerView,
    HolderView,
    OrganizationView,
    ReadModel,
    RoleView,
    role_id,
    role_name,
)
from crm_gateway.indexer.scanner import (
    ChainIndexer,
    IndexerConflict,
    IndexerStatus,
    StepResult,
)
from crm_gateway.indexer.worker import IndexerWorker

__all__ = [
    "DEFAULT_PROJECTIONS",
    "ChainIndexer",
    "CustomerView",
    "EventKey",
    "HolderView",
    "IndexedEvent",
    "IndexerConflict",
    "IndexerStatus",
    "IndexerWorker",
    "OrganizationView",
    "Projection",
    "ProjectionRegistry",
    "ReadModel",
    "RoleView",
    "StepResult",
    "default_registry",
    "handles",
    "role_id",
    "role_name",
]
