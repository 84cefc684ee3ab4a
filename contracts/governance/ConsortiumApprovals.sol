// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {OrganizationRoles} from "../access/OrganizationRoles.sol";

/**
 * @title ConsortiumApprovals
 * @notice Multi-organisation approval of consortium changes (the counterpart of a Fabric
 * endorsement policy): adding, suspending and reactivating organisations, and changing the
 * approval threshold itself.
 *
 * @dev Flow: an ORG_ADMIN of an active organisation proposes a change (its organisation's
 * approval is recorded at once); ORG_ADMINs of other active organisations approve (one approval
 * per organisation); any ORG_ADMIN of an active organisation executes it once enough organisations
 * approved and before it expires.
 *
 * Approvals are counted when they are used: only organisations that are active at that moment
 * count, and the requirement is `ceil(activeOrganizationCount * thresholdBps / 10000)` at that
 * moment. The change is validated when proposed (so mistakes surface at once) and again when
 * executed (the state may have moved on meanwhile).
 */
abstract contract ConsortiumApprovals is OrganizationRoles {
    /// @notice What a proposal changes. `data` of a proposal is the ABI encoding of its arguments:
    /// AddOrganization `(string name, address admin)`, SuspendOrganization and
    /// ReactivateOrganization `(uint64 orgId)`, ChangeThreshold `(uint16 thresholdBps)`.
    enum ProposalKind {
        AddOrganization,
        SuspendOrganization,
        ReactivateOrganization,
        ChangeThreshold
    }

    /// @notice A proposed consortium change.
    struct Proposal {
        /// What it changes.
        ProposalKind kind;
        /// The organisation that proposed it.
        uint64 proposerOrg;
        /// When it was proposed (block timestamp).
        uint64 createdAt;
        /// From this block timestamp on it can no longer be approved or executed.
        uint64 expiresAt;
        /// Whether it was executed.
        bool executed;
        /// The account that proposed it.
        address proposer;
        /// The ABI-encoded arguments (see {ProposalKind}).
        bytes data;
    }

    /// @notice Basis points in 10000 (100 %).
    uint16 public constant MAX_BPS = 10_000;

    /// @notice How long a proposal stays open, in seconds.
    uint64 public immutable proposalLifetime;

    /// @notice The share of active organisations that must approve, in basis points.
    uint16 public thresholdBps;

    uint256 private _proposalCount;
    mapping(uint256 proposalId => Proposal) private _proposals;
    mapping(uint256 proposalId => uint64[] orgIds) private _approvingOrganizations;
    mapping(uint256 proposalId => mapping(uint64 orgId => bool)) private _hasApproved;

    /// @notice A proposal was created (the proposer organisation's approval follows in
    /// {ProposalApproved}).
    /// @param proposalId The new proposal's id.
    /// @param kind What it changes.
    /// @param proposerOrg The proposing organisation.
    /// @param proposer The proposing account.
    /// @param data The ABI-encoded arguments (see {ProposalKind}).
    /// @param expiresAt The block timestamp from which it can no longer be approved or executed.
    event ProposalCreated(
        uint256 indexed proposalId,
        ProposalKind kind,
        uint64 indexed proposerOrg,
        address proposer,
        bytes data,
        uint64 expiresAt
    );

    /// @notice An organisation approved a proposal.
    /// @param proposalId The proposal.
    /// @param orgId The approving organisation.
    /// @param approver The ORG_ADMIN who cast the approval.
    /// @param approvals The approvals that count now (from active organisations), this one included.
    event ProposalApproved(uint256 indexed proposalId, uint64 indexed orgId, address approver, uint256 approvals);

    /// @notice A proposal was executed; the events of the change itself precede this one.
    /// @param proposalId The proposal.
    event ProposalExecuted(uint256 indexed proposalId);

    /// @notice The approval threshold changed (also emitted at deployment, from 0).
    /// @param oldBps The previous threshold in basis points.
    /// @param newBps The new threshold in basis points.
    event ThresholdChanged(uint16 oldBps, uint16 newBps);

    /// @notice A threshold must be between 1 and 10000 basis points.
    /// @param bps The threshold given.
    error InvalidThreshold(uint16 bps);

    /// @notice A proposal lifetime must be positive.
    /// @param lifetime The lifetime given.
    error InvalidProposalLifetime(uint64 lifetime);

    /// @notice No proposal has this id.
    /// @param proposalId The id asked for.
    error UnknownProposal(uint256 proposalId);

    /// @notice The proposal expired.
    /// @param proposalId The proposal.
    error ProposalExpired(uint256 proposalId);

    /// @notice The proposal was already executed.
    /// @param proposalId The proposal.
    error ProposalAlreadyExecuted(uint256 proposalId);

    /// @notice This organisation already approved the proposal.
    /// @param proposalId The proposal.
    /// @param orgId The organisation.
    error AlreadyApproved(uint256 proposalId, uint64 orgId);

    /// @notice Not enough active organisations approved the proposal.
    /// @param proposalId The proposal.
    /// @param approvals The approvals that count.
    /// @param required The approvals required.
    error BelowThreshold(uint256 proposalId, uint256 approvals, uint256 required);

    /// @param initialThresholdBps Share of active organisations that must approve, in basis points.
    /// @param lifetime How long a proposal stays open, in seconds.
    constructor(uint16 initialThresholdBps, uint64 lifetime) {
        if (lifetime == 0) revert InvalidProposalLifetime(lifetime);
        proposalLifetime = lifetime;
        _setThreshold(initialThresholdBps);
    }

    // ------------------------------------------------------------------------------------------
    // Proposing
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Propose a new organisation `name` with `admin` as its first ORG_ADMIN.
     * @param name The unique, non-empty name.
     * @param admin The first admin; must belong to no organisation.
     * @return proposalId The new proposal's id.
     */
    function proposeAddOrganization(string calldata name, address admin) external virtual returns (uint256) {
        return _propose(ProposalKind.AddOrganization, abi.encode(name, admin));
    }

    /**
     * @notice Propose suspending organisation `orgId` (never the last active one).
     * @param orgId An active organisation.
     * @return proposalId The new proposal's id.
     */
    function proposeSuspendOrganization(uint64 orgId) external virtual returns (uint256) {
        return _propose(ProposalKind.SuspendOrganization, abi.encode(orgId));
    }

    /**
     * @notice Propose reactivating the suspended organisation `orgId`.
     * @param orgId A suspended organisation.
     * @return proposalId The new proposal's id.
     */
    function proposeReactivateOrganization(uint64 orgId) external virtual returns (uint256) {
        return _propose(ProposalKind.ReactivateOrganization, abi.encode(orgId));
    }

    /**
     * @notice Propose a new approval threshold.
     * @param newThresholdBps Between 1 and 10000 basis points.
     * @return proposalId The new proposal's id.
     */
    function proposeThresholdChange(uint16 newThresholdBps) external virtual returns (uint256) {
        return _propose(ProposalKind.ChangeThreshold, abi.encode(newThresholdBps));
    }

    // ------------------------------------------------------------------------------------------
    // Approving and executing
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Approve proposal `proposalId` on behalf of the caller's organisation. The caller
     * must hold ORG_ADMIN in an active organisation that has not approved it yet.
     * @param proposalId The proposal.
     */
    function approve(uint256 proposalId) external virtual {
        uint64 orgId = _requireActiveOrganizationAdmin(_msgSender());
        _requireOpen(proposalId);
        _approve(proposalId, orgId);
    }

    /**
     * @notice Execute proposal `proposalId` once enough active organisations approved it. The
     * caller must hold ORG_ADMIN in an active organisation.
     * @param proposalId The proposal.
     */
    function execute(uint256 proposalId) external virtual {
        _requireActiveOrganizationAdmin(_msgSender());
        Proposal storage p = _requireOpen(proposalId);
        uint256 approvals = approvalCount(proposalId);
        uint256 required = requiredApprovals();
        if (approvals < required) revert BelowThreshold(proposalId, approvals, required);
        p.executed = true;
        _executeProposal(proposalId, p.kind, p.data);
        emit ProposalExecuted(proposalId);
    }

    // ------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------

    /**
     * @notice The proposal with id `proposalId`; reverts with {UnknownProposal} if none.
     * @param proposalId The proposal id.
     * @return The proposal record.
     */
    function proposal(uint256 proposalId) public view virtual returns (Proposal memory) {
        _requireKnownProposal(proposalId);
        return _proposals[proposalId];
    }

    /**
     * @notice How many proposals were ever created (ids run from 1 to this number).
     * @return The count.
     */
    function proposalCount() public view virtual returns (uint256) {
        return _proposalCount;
    }

    /**
     * @notice Whether organisation `orgId` approved proposal `proposalId` (whether or not that
     * approval counts now).
     * @param proposalId The proposal.
     * @param orgId The organisation.
     * @return True if it approved.
     */
    function hasApproved(uint256 proposalId, uint64 orgId) public view virtual returns (bool) {
        return _hasApproved[proposalId][orgId];
    }

    /**
     * @notice The approvals of proposal `proposalId` that count now: those of organisations that
     * are active.
     * @param proposalId The proposal.
     * @return The number of counted approvals.
     */
    function approvalCount(uint256 proposalId) public view virtual returns (uint256) {
        _requireKnownProposal(proposalId);
        uint64[] storage orgIds = _approvingOrganizations[proposalId];
        uint256 count;
        for (uint256 i; i < orgIds.length; ++i) {
            if (_isOrganizationActive(orgIds[i])) ++count;
        }
        return count;
    }

    /**
     * @notice The approvals a proposal needs now, from the active organisation count and the
     * threshold.
     * @return The number of approvals required.
     */
    function requiredApprovals() public view virtual returns (uint256) {
        return computeRequiredApprovals(activeOrganizationCount(), thresholdBps);
    }

    /**
     * @notice `ceil(organizations * bps / 10000)`: the approvals needed among `organizations`
     * active organisations at threshold `bps`.
     * @param organizations The number of active organisations.
     * @param bps The threshold in basis points.
     * @return The number of approvals required.
     */
    function computeRequiredApprovals(uint256 organizations, uint16 bps) public pure virtual returns (uint256) {
        return (organizations * bps + (MAX_BPS - 1)) / MAX_BPS;
    }

    // ------------------------------------------------------------------------------------------
    // Internal extension points
    // ------------------------------------------------------------------------------------------

    /**
     * @dev Create a proposal of `kind` with ABI-encoded `data` for the caller's organisation and
     * record that organisation's approval. Emits {ProposalCreated} and {ProposalApproved}.
     */
    function _propose(ProposalKind kind, bytes memory data) internal virtual returns (uint256) {
        address proposer = _msgSender();
        uint64 orgId = _requireActiveOrganizationAdmin(proposer);
        _validateProposal(kind, data);
        uint256 proposalId = ++_proposalCount;
        uint64 createdAt = uint64(block.timestamp);
        // Saturate rather than overflow, so a very long lifetime means "never expires".
        uint64 expiresAt = createdAt > type(uint64).max - proposalLifetime
            ? type(uint64).max
            : createdAt + proposalLifetime;
        _proposals[proposalId] = Proposal({
            kind: kind,
            proposerOrg: orgId,
            createdAt: createdAt,
            expiresAt: expiresAt,
            executed: false,
            proposer: proposer,
            data: data
        });
        emit ProposalCreated(proposalId, kind, orgId, proposer, data, expiresAt);
        _approve(proposalId, orgId);
        return proposalId;
    }

    /// @dev Record organisation `orgId`'s approval of `proposalId`. Emits {ProposalApproved}.
    function _approve(uint256 proposalId, uint64 orgId) internal virtual {
        if (_hasApproved[proposalId][orgId]) revert AlreadyApproved(proposalId, orgId);
        _hasApproved[proposalId][orgId] = true;
        _approvingOrganizations[proposalId].push(orgId);
        emit ProposalApproved(proposalId, orgId, _msgSender(), approvalCount(proposalId));
    }

    /// @dev Revert unless a proposal of `kind` with `data` could be executed now.
    function _validateProposal(ProposalKind kind, bytes memory data) internal view virtual {
        if (kind == ProposalKind.AddOrganization) {
            (string memory name, address admin) = abi.decode(data, (string, address));
            _checkNewOrganization(name, admin);
        } else if (kind == ProposalKind.SuspendOrganization) {
            uint64 orgId = abi.decode(data, (uint64));
            _requireActiveOrganization(orgId);
            if (activeOrganizationCount() == 1) revert LastActiveOrganization(orgId);
        } else if (kind == ProposalKind.ReactivateOrganization) {
            uint64 orgId = abi.decode(data, (uint64));
            _requireKnownOrganization(orgId);
            if (_isOrganizationActive(orgId)) revert OrganizationAlreadyActive(orgId);
        } else {
            uint16 bps = abi.decode(data, (uint16));
            if (bps == 0 || bps > MAX_BPS) revert InvalidThreshold(bps);
        }
    }

    /// @dev Apply an approved proposal. Reverts (undoing the execution) if it no longer applies.
    function _executeProposal(uint256, ProposalKind kind, bytes memory data) internal virtual {
        if (kind == ProposalKind.AddOrganization) {
            (string memory name, address admin) = abi.decode(data, (string, address));
            _addOrganization(name, admin);
        } else if (kind == ProposalKind.SuspendOrganization) {
            _setOrganizationActive(abi.decode(data, (uint64)), false);
        } else if (kind == ProposalKind.ReactivateOrganization) {
            _setOrganizationActive(abi.decode(data, (uint64)), true);
        } else {
            _setThreshold(abi.decode(data, (uint16)));
        }
    }

    /// @dev Set the approval threshold. Emits {ThresholdChanged}.
    function _setThreshold(uint16 newBps) internal virtual {
        if (newBps == 0 || newBps > MAX_BPS) revert InvalidThreshold(newBps);
        uint16 oldBps = thresholdBps;
        thresholdBps = newBps;
        emit ThresholdChanged(oldBps, newBps);
    }

    /// @dev Revert unless `proposalId` exists, is not executed and has not expired.
    function _requireOpen(uint256 proposalId) internal view virtual returns (Proposal storage) {
        _requireKnownProposal(proposalId);
        Proposal storage p = _proposals[proposalId];
        if (p.executed) revert ProposalAlreadyExecuted(proposalId);
        if (block.timestamp >= p.expiresAt) revert ProposalExpired(proposalId);
        return p;
    }

    /// @dev Revert with {UnknownProposal} unless `proposalId` names a created proposal.
    function _requireKnownProposal(uint256 proposalId) internal view virtual {
        if (proposalId == 0 || proposalId > _proposalCount) revert UnknownProposal(proposalId);
    }
}
