// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IConsortiumAccess} from "../access/IConsortiumAccess.sol";
import {IOrganizationDirectory} from "../access/IOrganizationDirectory.sol";

/**
 * @title PurposeRegistry
 * @notice The processing purposes of a consortium (GDPR Art. 5(1)(b), 13(1)(c)): for each purpose
 * its controller organisation, the lawful basis it relies on, and a hash of the notice text shown
 * to customers, versioned. Consent is given to one version of a purpose's notice: a new version
 * does not carry consent over (see ConsentLedger).
 *
 * @dev Rules:
 *
 * - A purpose is keyed by a `bytes32` id (the gateway uses keccak256 of a slug such as
 *   "marketing.email"); ids are never reused, not even after retirement.
 * - {definePurpose} is open to any ORG_ADMIN in force in the Consortium
 *   ({IConsortiumAccess.hasActiveRole}); the admin's organisation becomes the purpose's controller,
 *   for good. The purpose starts at version 1.
 * - {updateNotice} and {retirePurpose} are for the ORG_ADMINs of the controller organisation.
 *   {updateNotice} moves the purpose to the next version; {retirePurpose} ends it for good.
 * - The lawful basis is fixed when the purpose is defined: a purpose relying on another basis is
 *   another purpose.
 * - A purpose is used by its controller organisation, and by the organisations the controller
 *   shares it with ({sharePurpose}, {unsharePurpose}); a retired purpose is used by nobody. This
 *   is the purpose half of the processing rule ({purposeUse}); the ConsentLedger's `mayProcess`
 *   adds the customer's consent when the basis is consent.
 *
 * Gas: a purpose is two storage words; the word read by {purposeStatus} (version and state) is the
 * first, so a consent check costs one SLOAD here.
 */
contract PurposeRegistry {
    /**
     * @notice The lawful basis of a purpose (GDPR Art. 6(1)). The ordinal order is part of the ABI
     * and never changes; new bases are only ever appended.
     */
    enum LawfulBasis {
        /// Art. 6(1)(a): the data subject's consent.
        Consent,
        /// Art. 6(1)(b): performance of a contract with the data subject.
        Contract,
        /// Art. 6(1)(c): a legal obligation of the controller.
        LegalObligation,
        /// Art. 6(1)(f): a legitimate interest of the controller or a third party.
        LegitimateInterest
    }

    /// @notice A processing purpose.
    struct Purpose {
        /// The organisation that defined the purpose and controls it (0 for an unknown purpose).
        uint64 controllerOrg;
        /// The notice version, from 1 (0 for an unknown purpose).
        uint64 version;
        /// Hash of the notice text of the current version.
        bytes32 noticeHash;
        /// The lawful basis the purpose relies on.
        LawfulBasis basis;
        /// False once the purpose is retired.
        bool active;
        /// Block timestamp of the definition, the last notice update or the retirement.
        uint64 updatedAt;
    }

    /// @dev Storage form of a purpose: everything but the notice hash in one word.
    struct PurposeRecord {
        uint64 controllerOrg;
        uint64 version;
        uint64 updatedAt;
        LawfulBasis basis;
        bool active;
    }

    /// @notice Whether an organisation may process personal data under a purpose, and why not.
    /// The ordinal order is part of the ABI and never changes.
    enum Processing {
        /// Allowed.
        Allowed,
        /// No purpose has this id.
        UnknownPurpose,
        /// The purpose is retired.
        PurposeRetired,
        /// The organisation neither controls the purpose nor was it shared with it.
        PurposeNotShared,
        /// The purpose's basis is consent and the customer has no live consent for the organisation.
        NoLiveConsent
    }

    /// @notice Role allowed to define and manage purposes (as named in the Consortium).
    bytes32 public constant ORG_ADMIN = keccak256("ORG_ADMIN");

    /// @notice The Consortium whose ORG_ADMINs manage purposes.
    IConsortiumAccess public immutable consortium;

    mapping(bytes32 purposeId => PurposeRecord) private _records;
    mapping(bytes32 purposeId => bytes32) private _noticeHashes;
    mapping(bytes32 purposeId => mapping(uint64 orgId => bool)) private _sharedWith;

    /// @notice A purpose was defined, at version 1.
    /// @param purposeId The purpose id.
    /// @param controllerOrg The controller organisation (the defining admin's organisation).
    /// @param version The version (always 1).
    /// @param noticeHash Hash of the notice text.
    /// @param basis The lawful basis.
    event PurposeDefined(
        bytes32 indexed purposeId, uint64 indexed controllerOrg, uint64 version, bytes32 noticeHash, LawfulBasis basis
    );

    /// @notice A purpose's notice changed: consent given to earlier versions no longer counts.
    /// @param purposeId The purpose id.
    /// @param controllerOrg The controller organisation.
    /// @param version The new version.
    /// @param noticeHash Hash of the new notice text.
    /// @param basis The lawful basis (unchanged).
    event PurposeNoticeUpdated(
        bytes32 indexed purposeId, uint64 indexed controllerOrg, uint64 version, bytes32 noticeHash, LawfulBasis basis
    );

    /// @notice A purpose was retired for good: no consent to it counts any more.
    /// @param purposeId The purpose id.
    /// @param controllerOrg The controller organisation.
    /// @param version The version it was retired at.
    event PurposeRetired(bytes32 indexed purposeId, uint64 indexed controllerOrg, uint64 version);

    /// @notice The controller shared a purpose with another organisation, which may now use it.
    /// @param purposeId The purpose id.
    /// @param controllerOrg The controller organisation.
    /// @param orgId The organisation it is shared with.
    event PurposeShared(bytes32 indexed purposeId, uint64 indexed controllerOrg, uint64 indexed orgId);

    /// @notice The controller stopped sharing a purpose with an organisation.
    /// @param purposeId The purpose id.
    /// @param controllerOrg The controller organisation.
    /// @param orgId The organisation it is no longer shared with.
    event PurposeUnshared(bytes32 indexed purposeId, uint64 indexed controllerOrg, uint64 indexed orgId);

    /// @notice The consortium address has no code.
    /// @param consortium The address given.
    error InvalidConsortium(address consortium);

    /// @notice The zero purpose id is not valid.
    error InvalidPurposeId();

    /// @notice The zero notice hash is not valid.
    error InvalidNoticeHash();

    /// @notice A purpose with this id was already defined (ids are never reused).
    /// @param purposeId The purpose id.
    error PurposeAlreadyDefined(bytes32 purposeId);

    /// @notice No purpose has this id.
    /// @param purposeId The purpose id.
    error UnknownPurpose(bytes32 purposeId);

    /// @notice The purpose is retired.
    /// @param purposeId The purpose id.
    error PurposeIsRetired(bytes32 purposeId);

    /// @notice The caller's organisation does not control the purpose.
    /// @param purposeId The purpose id.
    /// @param orgId The caller's organisation.
    error NotPurposeController(bytes32 purposeId, uint64 orgId);

    /// @notice No organisation has this id (or it is the controller itself, which always uses its purpose).
    /// @param orgId The organisation id.
    error InvalidShareOrganization(uint64 orgId);

    /// @notice The purpose is already shared with the organisation.
    /// @param purposeId The purpose id.
    /// @param orgId The organisation.
    error PurposeAlreadyShared(bytes32 purposeId, uint64 orgId);

    /// @notice The purpose is not shared with the organisation.
    /// @param purposeId The purpose id.
    /// @param orgId The organisation.
    error PurposeNotSharedWith(bytes32 purposeId, uint64 orgId);

    /// @notice The new notice hash equals the current one (a new version would void consent for nothing).
    /// @param purposeId The purpose id.
    error NoticeUnchanged(bytes32 purposeId);

    /**
     * @notice Deploy the registry for a consortium.
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
     * @notice Define purpose `purposeId` with its first notice and its lawful basis; the caller's
     * organisation becomes its controller. The caller must hold ORG_ADMIN in force.
     * @dev Emits {PurposeDefined}. Reverts with {IAccessControl.AccessControlUnauthorizedAccount},
     * {InvalidPurposeId}, {InvalidNoticeHash} or {PurposeAlreadyDefined}.
     * @param purposeId The purpose id (non-zero; keccak256 of a slug such as "marketing.email").
     * @param noticeHash Hash of the notice text (non-zero).
     * @param basis The lawful basis.
     */
    function definePurpose(bytes32 purposeId, bytes32 noticeHash, LawfulBasis basis) external virtual {
        uint64 orgId = _requireOrgAdmin();
        if (purposeId == bytes32(0)) revert InvalidPurposeId();
        if (noticeHash == bytes32(0)) revert InvalidNoticeHash();
        if (_records[purposeId].version != 0) revert PurposeAlreadyDefined(purposeId);
        _definePurpose(purposeId, orgId, noticeHash, basis);
    }

    /**
     * @notice Publish a new notice for `purposeId`: the purpose moves to the next version, and
     * consent given to earlier versions stops counting until customers grant it again. The caller
     * must hold ORG_ADMIN in force in the controller organisation.
     * @dev Emits {PurposeNoticeUpdated}. Reverts with {IAccessControl.AccessControlUnauthorizedAccount},
     * {InvalidNoticeHash}, {UnknownPurpose}, {NotPurposeController}, {PurposeIsRetired} or
     * {NoticeUnchanged}.
     * @param purposeId The purpose id.
     * @param noticeHash Hash of the new notice text (non-zero, different from the current one).
     */
    function updateNotice(bytes32 purposeId, bytes32 noticeHash) external virtual {
        PurposeRecord storage record = _requireController(purposeId);
        if (noticeHash == bytes32(0)) revert InvalidNoticeHash();
        if (!record.active) revert PurposeIsRetired(purposeId);
        if (_noticeHashes[purposeId] == noticeHash) revert NoticeUnchanged(purposeId);
        _updateNotice(purposeId, noticeHash);
    }

    /**
     * @notice Retire `purposeId` for good: no consent to it counts any more and its id is never
     * reused. The caller must hold ORG_ADMIN in force in the controller organisation.
     * @dev Emits {PurposeRetired}. Reverts with {IAccessControl.AccessControlUnauthorizedAccount},
     * {UnknownPurpose}, {NotPurposeController} or {PurposeIsRetired}.
     * @param purposeId The purpose id.
     */
    function retirePurpose(bytes32 purposeId) external virtual {
        PurposeRecord storage record = _requireController(purposeId);
        if (!record.active) revert PurposeIsRetired(purposeId);
        _retirePurpose(purposeId);
    }

    /**
     * @notice Let organisation `orgId` use active purpose `purposeId` (as processor under the
     * controller's notice). The caller must hold ORG_ADMIN in force in the controller organisation.
     * @dev Emits {PurposeShared}. Reverts with {IAccessControl.AccessControlUnauthorizedAccount},
     * {UnknownPurpose}, {NotPurposeController}, {PurposeIsRetired}, {InvalidShareOrganization} or
     * {PurposeAlreadyShared}.
     * @param purposeId The purpose id.
     * @param orgId An existing organisation other than the controller.
     */
    function sharePurpose(bytes32 purposeId, uint64 orgId) external virtual {
        PurposeRecord storage record = _requireController(purposeId);
        if (!record.active) revert PurposeIsRetired(purposeId);
        uint64 count = IOrganizationDirectory(address(consortium)).organizationCount();
        if (orgId == 0 || orgId > count || orgId == record.controllerOrg) revert InvalidShareOrganization(orgId);
        if (_sharedWith[purposeId][orgId]) revert PurposeAlreadyShared(purposeId, orgId);
        _sharedWith[purposeId][orgId] = true;
        emit PurposeShared(purposeId, record.controllerOrg, orgId);
    }

    /**
     * @notice Stop letting organisation `orgId` use `purposeId` (also once it is retired). The
     * caller must hold ORG_ADMIN in force in the controller organisation.
     * @dev Emits {PurposeUnshared}. Reverts with {IAccessControl.AccessControlUnauthorizedAccount},
     * {UnknownPurpose}, {NotPurposeController} or {PurposeNotSharedWith}.
     * @param purposeId The purpose id.
     * @param orgId The organisation it is shared with.
     */
    function unsharePurpose(bytes32 purposeId, uint64 orgId) external virtual {
        PurposeRecord storage record = _requireController(purposeId);
        if (!_sharedWith[purposeId][orgId]) revert PurposeNotSharedWith(purposeId, orgId);
        delete _sharedWith[purposeId][orgId];
        emit PurposeUnshared(purposeId, record.controllerOrg, orgId);
    }

    // ------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Whether the controller of `purposeId` shares it with organisation `orgId`.
     * @param purposeId The purpose id.
     * @param orgId The organisation.
     * @return True if shared.
     */
    function isSharedWith(bytes32 purposeId, uint64 orgId) public view virtual returns (bool) {
        return _sharedWith[purposeId][orgId];
    }

    /**
     * @notice The purpose half of the processing rule: whether organisation `orgId` may process
     * personal data under `purposeId`, and whether the customer's consent is needed on top.
     * @dev {Processing.Allowed} with `needsConsent` true means: allowed given a live consent (the
     * ConsentLedger's `mayProcess` checks it).
     * @param purposeId The purpose id.
     * @param orgId The processing organisation.
     * @return answer {Processing.Allowed}, {Processing.UnknownPurpose}, {Processing.PurposeRetired}
     * or {Processing.PurposeNotShared}.
     * @return needsConsent Whether the purpose's basis is consent.
     */
    function purposeUse(bytes32 purposeId, uint64 orgId)
        public
        view
        virtual
        returns (Processing answer, bool needsConsent)
    {
        PurposeRecord storage record = _records[purposeId];
        if (record.version == 0) return (Processing.UnknownPurpose, false);
        if (!record.active) return (Processing.PurposeRetired, false);
        if (record.controllerOrg != orgId && !_sharedWith[purposeId][orgId]) {
            return (Processing.PurposeNotShared, false);
        }
        return (Processing.Allowed, record.basis == LawfulBasis.Consent);
    }

    /**
     * @notice Purpose `purposeId` (all zero for an unknown id; see {exists}).
     * @param purposeId The purpose id.
     * @return The purpose.
     */
    function purpose(bytes32 purposeId) public view virtual returns (Purpose memory) {
        PurposeRecord memory record = _records[purposeId];
        return Purpose({
            controllerOrg: record.controllerOrg,
            version: record.version,
            noticeHash: _noticeHashes[purposeId],
            basis: record.basis,
            active: record.active,
            updatedAt: record.updatedAt
        });
    }

    /**
     * @notice The current version of `purposeId` and whether it is active, in one storage read
     * (what a consent check needs).
     * @param purposeId The purpose id.
     * @return version The current version (0 for an unknown purpose).
     * @return active False for a retired or unknown purpose.
     */
    function purposeStatus(bytes32 purposeId) public view virtual returns (uint64 version, bool active) {
        PurposeRecord storage record = _records[purposeId];
        return (record.version, record.active);
    }

    /**
     * @notice Whether `purposeId` was ever defined (it may be retired since).
     * @param purposeId The purpose id.
     * @return True if it was.
     */
    function exists(bytes32 purposeId) public view virtual returns (bool) {
        return _records[purposeId].version != 0;
    }

    // ------------------------------------------------------------------------------------------
    // Internal extension points
    // ------------------------------------------------------------------------------------------

    /**
     * @dev Revert with {IAccessControl.AccessControlUnauthorizedAccount} unless the caller holds
     * ORG_ADMIN in force; returns the caller's organisation.
     */
    function _requireOrgAdmin() internal view virtual returns (uint64 orgId) {
        address caller = msg.sender;
        if (consortium.hasActiveRole(ORG_ADMIN, caller)) orgId = consortium.organizationOf(caller);
        if (orgId == 0) revert IAccessControl.AccessControlUnauthorizedAccount(caller, ORG_ADMIN);
    }

    /**
     * @dev Revert unless the caller holds ORG_ADMIN in force in the controller organisation of the
     * defined purpose `purposeId` ({UnknownPurpose}, {NotPurposeController}); returns its record.
     */
    function _requireController(bytes32 purposeId) internal view virtual returns (PurposeRecord storage record) {
        uint64 orgId = _requireOrgAdmin();
        record = _records[purposeId];
        if (record.version == 0) revert UnknownPurpose(purposeId);
        if (record.controllerOrg != orgId) revert NotPurposeController(purposeId, orgId);
    }

    /// @dev Define `purposeId` at version 1, controlled by `orgId`. No checks. Emits {PurposeDefined}.
    function _definePurpose(bytes32 purposeId, uint64 orgId, bytes32 noticeHash, LawfulBasis basis) internal virtual {
        _records[purposeId] = PurposeRecord({
            controllerOrg: orgId,
            version: 1,
            updatedAt: uint64(block.timestamp),
            basis: basis,
            active: true
        });
        _noticeHashes[purposeId] = noticeHash;
        emit PurposeDefined(purposeId, orgId, 1, noticeHash, basis);
    }

    /// @dev Move `purposeId` to the next version with `noticeHash`. No checks. Emits {PurposeNoticeUpdated}.
    function _updateNotice(bytes32 purposeId, bytes32 noticeHash) internal virtual {
        PurposeRecord storage record = _records[purposeId];
        uint64 version = record.version + 1;
        record.version = version;
        record.updatedAt = uint64(block.timestamp);
        _noticeHashes[purposeId] = noticeHash;
        emit PurposeNoticeUpdated(purposeId, record.controllerOrg, version, noticeHash, record.basis);
    }

    /// @dev Retire `purposeId`. No checks. Emits {PurposeRetired}.
    function _retirePurpose(bytes32 purposeId) internal virtual {
        PurposeRecord storage record = _records[purposeId];
        record.active = false;
        record.updatedAt = uint64(block.timestamp);
        emit PurposeRetired(purposeId, record.controllerOrg, record.version);
    }
}
