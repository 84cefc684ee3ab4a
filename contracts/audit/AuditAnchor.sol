// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {IConsortiumAccess} from "../access/IConsortiumAccess.sol";

/**
 * @title AuditAnchor
 * @notice Merkle roots of the organisations' hash-chained access logs, anchored on-chain in
 * batches, so that any later change to a logged entry (who read which customer's data, when, for
 * what purpose, allowed or refused) can be proven. Personal data never comes here: a leaf commits
 * to an entry's sequence number and the SHA-256 hash the gateway chained it with.
 *
 * @dev Rules:
 *
 * - {anchor} is for accounts holding AUDITOR in force in the Consortium
 *   ({IConsortiumAccess.hasActiveRole}, which implies an active organisation); a batch belongs to
 *   the caller's organisation ({IConsortiumAccess.organizationOf}). AUDITOR and not DATA_STEWARD:
 *   the key that signs anchors runs unattended in the gateway, so it should be able to do nothing
 *   else on-chain (AUDITOR grants no other write anywhere), and the accounts that read and change
 *   customer data should not be the ones attesting the log of those reads (separation of duties).
 * - An organisation's log is anchored contiguously from entry 1: each batch covers entries
 *   `firstSeq..lastSeq` with `firstSeq` one past the organisation's previous `lastSeq`, and
 *   `count == lastSeq - firstSeq + 1` (the log has no gaps). Batches cannot be replaced or removed.
 * - The contract cannot see the log, so a misbehaving AUDITOR could anchor a bogus batch (say,
 *   entries far ahead of the log) after which no honest batch continues the range. An ORG_ADMIN
 *   in force of the batch's organisation may therefore supersede the organisation's latest batch
 *   ({supersedeBatch}): it stays readable but proves nothing any more ({verify} is false for it),
 *   and the organisation's anchored range steps back to where it was before it. Superseding
 *   repeatedly undoes a run of bogus batches, newest first. Both acts are events.
 * - Leaves follow OpenZeppelin's `StandardMerkleTree` with the leaf encoding `(uint256 seq,
 *   bytes32 entryHash)`: `keccak256(bytes.concat(keccak256(abi.encode(seq, entryHash))))`; inner
 *   nodes hash sorted pairs, as {MerkleProof.verify} expects. So a tree built off-chain with that
 *   library (or the gateway's Python port) verifies here, and a leaf can never be mistaken for an
 *   inner node (64-byte preimages are never leaves).
 *
 * Gas: a batch is two storage words (root; organisation and range packed with the block number),
 * plus one word per organisation for its last anchored entry, whatever the batch size.
 */
contract AuditAnchor {
    /// @notice An anchored batch of one organisation's access log.
    struct Batch {
        /// Merkle root over the batch's entries (StandardMerkleTree, leaf `(uint256, bytes32)`).
        bytes32 root;
        /// The organisation whose log it is (0 for an unknown batch).
        uint64 orgId;
        /// First entry (sequence number) in the batch.
        uint64 firstSeq;
        /// Last entry in the batch.
        uint64 lastSeq;
        /// Number of entries (`lastSeq - firstSeq + 1`).
        uint64 count;
        /// Block the batch was anchored in.
        uint64 anchoredBlock;
    }

    /// @dev Storage form of a batch: the root, then everything else in one word.
    struct BatchRecord {
        uint64 orgId;
        uint64 firstSeq;
        uint64 lastSeq;
        uint64 anchoredBlock;
    }

    /// @notice Role allowed to anchor (as named in the Consortium).
    bytes32 public constant AUDITOR = keccak256("AUDITOR");
    /// @notice Role allowed to supersede its organisation's latest batch (as named in the Consortium).
    bytes32 public constant ORG_ADMIN = keccak256("ORG_ADMIN");

    /// @notice The Consortium whose AUDITORs anchor.
    IConsortiumAccess public immutable consortium;

    /// @notice How many batches were anchored (ids run from 1 to this number, across organisations).
    uint256 public batchCount;

    mapping(uint256 batchId => bytes32) private _roots;
    mapping(uint256 batchId => BatchRecord) private _records;
    mapping(uint64 orgId => uint64) private _lastSeq;
    mapping(uint64 orgId => uint256) private _lastBatch;
    mapping(uint256 batchId => uint256) private _previousBatch;

    /// @notice Whether a batch was superseded by its organisation's admin (it proves nothing then).
    mapping(uint256 batchId => bool) public superseded;

    /// @notice A batch of an organisation's access log was anchored.
    /// @param batchId The batch id (sequential from 1).
    /// @param orgId The organisation whose log it is.
    /// @param root The Merkle root over the batch's entries.
    /// @param firstSeq The first entry in the batch.
    /// @param lastSeq The last entry in the batch.
    /// @param count The number of entries.
    event BatchAnchored(
        uint256 indexed batchId, uint64 indexed orgId, bytes32 root, uint64 firstSeq, uint64 lastSeq, uint64 count
    );

    /// @notice An organisation's admin superseded its latest batch; the next batch starts after
    /// `lastAnchoredSeq` again.
    /// @param batchId The superseded batch.
    /// @param orgId The organisation.
    /// @param admin The ORG_ADMIN who superseded it.
    /// @param lastAnchoredSeq The organisation's last anchored entry now.
    event BatchSuperseded(uint256 indexed batchId, uint64 indexed orgId, address admin, uint64 lastAnchoredSeq);

    /// @notice The consortium address has no code.
    /// @param consortium The address given.
    error InvalidConsortium(address consortium);

    /// @notice The zero root is not valid.
    error InvalidRoot();

    /// @notice The range is empty or inverted, or `count` is not its size.
    /// @param firstSeq The first entry given.
    /// @param lastSeq The last entry given.
    /// @param count The count given.
    error InvalidRange(uint64 firstSeq, uint64 lastSeq, uint64 count);

    /// @notice The batch does not continue the organisation's anchored log.
    /// @param orgId The organisation.
    /// @param expectedFirstSeq The entry the next batch must start at.
    /// @param firstSeq The first entry given.
    error NonContiguousBatch(uint64 orgId, uint64 expectedFirstSeq, uint64 firstSeq);

    /// @notice The batch belongs to another organisation than the caller's.
    /// @param batchId The batch id.
    /// @param orgId The caller's organisation.
    error NotBatchOrganization(uint256 batchId, uint64 orgId);

    /// @notice Only the organisation's latest (not superseded) batch can be superseded.
    /// @param batchId The batch id given.
    /// @param latestBatchId The organisation's latest batch.
    error NotLatestBatch(uint256 batchId, uint256 latestBatchId);

    /// @notice No batch has this id.
    /// @param batchId The batch id.
    error UnknownBatch(uint256 batchId);

    /**
     * @notice Deploy the anchor for a consortium.
     * @param consortium_ The Consortium (anything implementing {IConsortiumAccess}).
     */
    constructor(IConsortiumAccess consortium_) {
        if (address(consortium_).code.length == 0) revert InvalidConsortium(address(consortium_));
        consortium = consortium_;
    }

    // ------------------------------------------------------------------------------------------
    // Writes
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Anchor the Merkle root of entries `firstSeq..lastSeq` of the caller's organisation's
     * access log. The caller must hold AUDITOR in force.
     * @dev Emits {BatchAnchored}. Reverts with {IAccessControl.AccessControlUnauthorizedAccount},
     * {InvalidRoot}, {InvalidRange} or {NonContiguousBatch}.
     * @param root The Merkle root (non-zero).
     * @param firstSeq The first entry; one past the organisation's last anchored entry (1 at first).
     * @param lastSeq The last entry (at least `firstSeq`).
     * @param count The number of entries, `lastSeq - firstSeq + 1`.
     * @return batchId The new batch's id.
     */
    function anchor(bytes32 root, uint64 firstSeq, uint64 lastSeq, uint64 count)
        external
        virtual
        returns (uint256 batchId)
    {
        uint64 orgId = _requireAuditor();
        if (root == bytes32(0)) revert InvalidRoot();
        if (firstSeq == 0 || lastSeq < firstSeq || count != lastSeq - firstSeq + 1) {
            revert InvalidRange(firstSeq, lastSeq, count);
        }
        uint64 expected = _lastSeq[orgId] + 1;
        if (firstSeq != expected) revert NonContiguousBatch(orgId, expected, firstSeq);

        batchId = ++batchCount;
        _roots[batchId] = root;
        _records[batchId] =
            BatchRecord({orgId: orgId, firstSeq: firstSeq, lastSeq: lastSeq, anchoredBlock: uint64(block.number)});
        _lastSeq[orgId] = lastSeq;
        uint256 previous = _lastBatch[orgId];
        if (previous != 0) _previousBatch[batchId] = previous;
        _lastBatch[orgId] = batchId;
        emit BatchAnchored(batchId, orgId, root, firstSeq, lastSeq, count);
    }

    /**
     * @notice Supersede batch `batchId`, the latest batch of the caller's organisation: it proves
     * nothing any more, and the organisation's next batch starts at its `firstSeq` again. The
     * caller must hold ORG_ADMIN in force in the batch's organisation.
     * @dev Emits {BatchSuperseded}. Reverts with {IAccessControl.AccessControlUnauthorizedAccount},
     * {UnknownBatch}, {NotBatchOrganization} or {NotLatestBatch}.
     * @param batchId The batch id.
     */
    function supersedeBatch(uint256 batchId) external virtual {
        uint64 orgId = _requireRole(ORG_ADMIN);
        BatchRecord memory record = _requireBatch(batchId);
        if (record.orgId != orgId) revert NotBatchOrganization(batchId, orgId);
        uint256 latest = _lastBatch[orgId];
        if (batchId != latest) revert NotLatestBatch(batchId, latest);
        superseded[batchId] = true;
        _lastBatch[orgId] = _previousBatch[batchId];
        uint64 lastSeq = record.firstSeq - 1;
        _lastSeq[orgId] = lastSeq;
        emit BatchSuperseded(batchId, orgId, msg.sender, lastSeq);
    }

    // ------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Batch `batchId`; reverts with {UnknownBatch} if there is none.
     * @param batchId The batch id.
     * @return The batch.
     */
    function batch(uint256 batchId) public view virtual returns (Batch memory) {
        BatchRecord memory record = _requireBatch(batchId);
        return Batch({
            root: _roots[batchId],
            orgId: record.orgId,
            firstSeq: record.firstSeq,
            lastSeq: record.lastSeq,
            count: record.lastSeq - record.firstSeq + 1,
            anchoredBlock: record.anchoredBlock
        });
    }

    /**
     * @notice Whether `leaf` is in batch `batchId`, by its Merkle proof (sorted-pair hashing);
     * false for a superseded batch. Reverts with {UnknownBatch} if there is no such batch.
     * @param batchId The batch id.
     * @param leaf The leaf, as {leafOf} computes it.
     * @param proof The sibling hashes from the leaf up to the root.
     * @return True if the proof leads from `leaf` to the batch's root.
     */
    function verify(uint256 batchId, bytes32 leaf, bytes32[] calldata proof) public view virtual returns (bool) {
        _requireBatch(batchId);
        if (superseded[batchId]) return false;
        return MerkleProof.verifyCalldata(proof, _roots[batchId], leaf);
    }

    /**
     * @notice Whether entry `seq` with hash `entryHash` is in batch `batchId`: `seq` must lie in the
     * batch's range, the batch not superseded, and the proof must lead from its leaf to the root.
     * Reverts with {UnknownBatch}.
     * @param batchId The batch id.
     * @param seq The entry's sequence number.
     * @param entryHash The entry's SHA-256 chain hash.
     * @param proof The sibling hashes from the leaf up to the root.
     * @return True if the entry is in the batch.
     */
    function verifyEntry(uint256 batchId, uint64 seq, bytes32 entryHash, bytes32[] calldata proof)
        external
        view
        virtual
        returns (bool)
    {
        BatchRecord memory record = _requireBatch(batchId);
        if (seq < record.firstSeq || seq > record.lastSeq || superseded[batchId]) return false;
        return MerkleProof.verifyCalldata(proof, _roots[batchId], leafOf(seq, entryHash));
    }

    /**
     * @notice The leaf of an entry: `keccak256(bytes.concat(keccak256(abi.encode(seq, entryHash))))`,
     * as OpenZeppelin's `StandardMerkleTree` hashes a value `[seq, entryHash]` of types
     * `["uint256", "bytes32"]`.
     * @param seq The entry's sequence number.
     * @param entryHash The entry's SHA-256 chain hash.
     * @return The leaf.
     */
    function leafOf(uint256 seq, bytes32 entryHash) public pure virtual returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(seq, entryHash))));
    }

    /**
     * @notice The last entry of organisation `orgId`'s log that is anchored (0 for none); the next
     * batch must start one past it.
     * @param orgId The organisation id.
     * @return The sequence number.
     */
    function lastAnchoredSeq(uint64 orgId) external view virtual returns (uint64) {
        return _lastSeq[orgId];
    }

    /**
     * @notice The id of organisation `orgId`'s latest batch (0 for none).
     * @param orgId The organisation id.
     * @return The batch id.
     */
    function lastBatchOf(uint64 orgId) external view virtual returns (uint256) {
        return _lastBatch[orgId];
    }

    // ------------------------------------------------------------------------------------------
    // Internal extension points
    // ------------------------------------------------------------------------------------------

    /**
     * @dev Revert with {IAccessControl.AccessControlUnauthorizedAccount} unless the caller holds
     * AUDITOR in force; returns the caller's organisation.
     */
    function _requireAuditor() internal view virtual returns (uint64 orgId) {
        return _requireRole(AUDITOR);
    }

    /**
     * @dev Revert with {IAccessControl.AccessControlUnauthorizedAccount} unless the caller holds
     * `role` in force in an organisation; returns the caller's organisation.
     */
    function _requireRole(bytes32 role) internal view virtual returns (uint64 orgId) {
        address caller = msg.sender;
        if (consortium.hasActiveRole(role, caller)) orgId = consortium.organizationOf(caller);
        if (orgId == 0) revert IAccessControl.AccessControlUnauthorizedAccount(caller, role);
    }

    /// @dev Batch `batchId`'s record; reverts with {UnknownBatch} if there is none.
    function _requireBatch(uint256 batchId) internal view virtual returns (BatchRecord memory record) {
        record = _records[batchId];
        if (record.orgId == 0) revert UnknownBatch(batchId);
    }
}
