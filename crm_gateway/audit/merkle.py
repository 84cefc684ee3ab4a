"""Merkle trees over access-log entries, as OpenZeppelin's `StandardMerkleTree` builds them.

The layout is that of `@openzeppelin/merkle-tree` (`StandardMerkleTree.of(values, ["uint256",
"bytes32"])`, leaves sorted), so a third party can rebuild a batch's root with that library from
the `(seq, entry_hash)` pairs, and every proof verifies with Solidity's `MerkleProof.verify`:

* a leaf is `keccak256(keccak256(abi.encode(seq, entry_hash)))` (double-hashed, so that no leaf is
  the 64-byte preimage of an inner node);
* the leaves are sorted by value and stored at the end of an array of `2n - 1` nodes in reverse
  order; node `i` is the hash of its children `2i + 1` and `2i + 2`, hashed as a sorted pair
  (`keccak256(min || max)`, which is what makes the proofs free of left/right flags);
* a proof is the sibling of each node from the leaf up to the root (node 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from Crypto.Hash import keccak as _keccak


def keccak256(data: bytes) -> bytes:
    return _keccak.new(digest_bits=256, data=data).digest()


def hash_pair(a: bytes, b: bytes) -> bytes:
    """The parent of two nodes: keccak256 of the pair in ascending order (OZ `_hashPair`)."""
    return keccak256(a + b if a <= b else b + a)


def leaf_hash(seq: int, entry_hash: bytes) -> bytes:
    """The leaf of an access-log entry: `(uint256 seq, bytes32 entry_hash)` as a standard leaf."""
    if len(entry_hash) != 32:
        raise ValueError("an entry hash is 32 bytes")
    return keccak256(keccak256(seq.to_bytes(32, "big") + entry_hash))


def process_proof(leaf: bytes, proof: Iterable[bytes]) -> bytes:
    """The root a proof leads to from `leaf` (OZ `MerkleProof.processProof`)."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node


def verify_proof(leaf: bytes, proof: Iterable[bytes], root: bytes) -> bool:
    """Whether `proof` leads from `leaf` to `root` (OZ `MerkleProof.verify`)."""
    return process_proof(leaf, proof) == root


@dataclass(frozen=True)
class MerkleTree:
    """A complete tree in array form: `nodes[0]` is the root, the leaves are at the end."""

    nodes: tuple[bytes, ...]
    # For each leaf (by its value's position in the input), its index in `nodes`.
    positions: dict[bytes, int]

    @classmethod
    def of_leaves(cls, leaves: Sequence[bytes]) -> MerkleTree:
        """The standard tree over already-hashed leaves (sorted here, as `sortLeaves` does)."""
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        ordered = sorted(leaves)
        size = 2 * len(ordered) - 1
        nodes: list[bytes] = [b""] * size
        for i, leaf in enumerate(ordered):
            nodes[size - 1 - i] = leaf
        for i in range(size - 1 - len(ordered), -1, -1):
            nodes[i] = hash_pair(nodes[2 * i + 1], nodes[2 * i + 2])
        positions = {leaf: size - 1 - i for i, leaf in enumerate(ordered)}
        return cls(tuple(nodes), positions)

    @classmethod
    def of_entries(cls, entries: Iterable[tuple[int, bytes]]) -> MerkleTree:
        """The tree over access-log entries given as `(seq, entry_hash)`."""
        return cls.of_leaves([leaf_hash(seq, entry_hash) for seq, entry_hash in entries])

    @property
    def root(self) -> bytes:
        return self.nodes[0]

    def __len__(self) -> int:
        return len(self.positions)

    def proof(self, leaf: bytes) -> list[bytes]:
        """The siblings from `leaf` up to the root; `KeyError` if the leaf is not in the tree."""
        index = self.positions[leaf]
        proof = []
        while index > 0:
            proof.append(self.nodes[index + 1 if index % 2 == 1 else index - 1])
            index = (index - 1) // 2
        return proof


def root_of(entries: Iterable[tuple[int, bytes]]) -> bytes:
    """The root over access-log entries given as `(seq, entry_hash)`."""
    return MerkleTree.of_entries(entries).root
