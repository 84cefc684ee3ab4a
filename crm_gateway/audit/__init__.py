"""The anchored access log: Merkle trees over its entries (`merkle`), batches anchored on-chain
through the outbox (`anchoring`, `worker`), and the checks of the whole log against its hash chain
and its anchors (`verify`). The hash chain itself is written by `store.audit`."""

from crm_gateway.audit.anchoring import (
    ANCHOR_CONTRACT,
    Anchorer,
    AuditChainBroken,
    BatchView,
)
from crm_gateway.audit.merkle import MerkleTree, leaf_hash, process_proof, verify_proof
from crm_gateway.audit.verify import ChainWalker, LogVerifier, Problem, VerifyReport
from crm_gateway.audit.worker import AnchorWorker

__all__ = [
    "ANCHOR_CONTRACT",
    "AnchorWorker",
    "Anchorer",
    "AuditChainBroken",
    "BatchView",
    "ChainWalker",
    "LogVerifier",
    "MerkleTree",
    "Problem",
    "VerifyReport",
    "leaf_hash",
    "process_proof",
    "verify_proof",
]
