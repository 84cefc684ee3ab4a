// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {AccessControlEnumerable} from "@openzeppelin/contracts/access/extensions/AccessControlEnumerable.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";

/**
 * @title OrganizationRoles
 * @notice Organisations of a consortium, their members, and roles that organisation admins delegate
 * to their own members (the EVM counterpart of Fabric MSPs and chaincode ACLs).
 *
 * @dev Every delegable role is held inside exactly one organisation:
 *
 * - An account joins an organisation when an ORG_ADMIN of that organisation grants it its first
 *   delegable role ({MemberAdded}), and leaves it when its last delegable role is revoked or
 *   renounced ({MemberRemoved}). An account belongs to at most one organisation at a time.
 * - An account joins only with its own consent: its own transaction ({acceptMembership}, then
 *   {grantRole} by an ORG_ADMIN of that organisation), or its EIP-712 signature of a
 *   {JOIN_ORGANIZATION_TYPEHASH} struct naming the organisation and the role, which an ORG_ADMIN
 *   of that organisation submits ({grantRoleBySig}). So no organisation can pull in an account of
 *   another (a revoked one, or the pending admin of an AddOrganization proposal) without its say.
 *   The first admin of a new organisation is the one the consortium approved (ConsortiumApprovals).
 * - An ORG_ADMIN may grant and revoke delegable roles only for accounts of its own organisation
 *   (or accounts of no organisation that consent to join it, as above), and only while that
 *   organisation is active. CONSORTIUM_ADMIN and DEFAULT_ADMIN_ROLE are never delegable.
 * - An organisation always keeps at least one ORG_ADMIN.
 * - A role held by a member of a suspended organisation does not pass {_checkRole} (and thus
 *   `onlyRole`), and {hasActiveRole} is false for it; the grant itself is kept, so reactivating the
 *   organisation restores it.
 *
 * Organisations are created and suspended only through the internal {_addOrganization} and
 * {_setOrganizationActive}; the derived contract decides who may call them (see
 * ConsortiumApprovals). At least one organisation stays active at all times.
 */
abstract contract OrganizationRoles is AccessControlEnumerable, EIP712 {
    using EnumerableSet for EnumerableSet.AddressSet;

    /// @notice An organisation of the consortium.
    struct Organization {
        /// Sequential id, starting at 1 (0 means "no organisation").
        uint64 id;
        /// Unique, non-empty display name.
        string name;
        /// The admin the organisation was created with (the live admins are the members holding
        /// ORG_ADMIN; see {organizationAdminCount} and {membersOf}).
        address admin;
        /// False while the organisation is suspended.
        bool active;
    }

    /// @notice Operator of the consortium; never delegable by organisation admins.
    bytes32 public constant CONSORTIUM_ADMIN = keccak256("CONSORTIUM_ADMIN");
    /// @notice Admin of one organisation: grants and revokes roles of its members, votes on proposals.
    bytes32 public constant ORG_ADMIN = keccak256("ORG_ADMIN");
    /// @notice Manages customer records and their commitments.
    bytes32 public constant DATA_STEWARD = keccak256("DATA_STEWARD");
    /// @notice Customer-service agent.
    bytes32 public constant AGENT = keccak256("AGENT");
    /// @notice Marketing: may read consent state for campaigns.
    bytes32 public constant MARKETER = keccak256("MARKETER");
    /// @notice Read-only auditor; anchors and verifies audit batches.
    bytes32 public constant AUDITOR = keccak256("AUDITOR");
    /// @notice Partner merchant: earns and redeems loyalty points.
    bytes32 public constant MERCHANT = keccak256("MERCHANT");
    /// @notice Submits transactions on behalf of others (gateway, meta-transactions).
    bytes32 public constant RELAYER = keccak256("RELAYER");

    /// @notice EIP-712 type hash of the struct an account signs to join an organisation with a role.
    bytes32 public constant JOIN_ORGANIZATION_TYPEHASH =
        keccak256("JoinOrganization(address account,uint64 orgId,bytes32 role,uint256 nonce,uint256 deadline)");

    /// @notice The organisation of each account (0 = none).
    mapping(address account => uint64 orgId) public organizationOf;

    /// @notice The organisation each account agreed, by its own transaction, to be added to
    /// (0 = none); used up when it joins.
    mapping(address account => uint64 orgId) public membershipAcceptance;

    /// @notice The nonce the next {grantRoleBySig} signature of each account must carry.
    mapping(address account => uint256) public membershipNonces;

    mapping(uint64 orgId => Organization) private _organizations;
    mapping(bytes32 nameHash => uint64 orgId) private _organizationIdByNameHash;
    mapping(uint64 orgId => EnumerableSet.AddressSet) private _members;
    mapping(uint64 orgId => uint256) private _organizationAdminCount;
    mapping(address account => uint256) private _delegatedRoleCount;
    uint64 private _organizationCount;
    uint64 private _activeOrganizationCount;

    /// @notice A new organisation was created; its admin joins it and gets ORG_ADMIN.
    /// @param orgId The new organisation's id.
    /// @param name Its unique name.
    /// @param admin Its first ORG_ADMIN.
    event OrganizationAdded(uint64 indexed orgId, string name, address indexed admin);

    /// @notice An organisation was suspended: its members' roles stop passing role checks.
    /// @param orgId The suspended organisation.
    event OrganizationSuspended(uint64 indexed orgId);

    /// @notice A suspended organisation was reactivated.
    /// @param orgId The reactivated organisation.
    event OrganizationReactivated(uint64 indexed orgId);

    /// @notice An account joined an organisation (with its first delegated role).
    /// @param orgId The organisation.
    /// @param account The new member.
    event MemberAdded(uint64 indexed orgId, address indexed account);

    /// @notice An account left an organisation (its last delegated role was revoked or renounced).
    /// @param orgId The organisation.
    /// @param account The former member.
    event MemberRemoved(uint64 indexed orgId, address indexed account);

    /// @notice An account agreed (or withdrew its agreement, `orgId` 0) to join an organisation.
    /// @param account The account.
    /// @param orgId The organisation it agrees to join, or 0.
    event MembershipAccepted(address indexed account, uint64 indexed orgId);

    /// @notice No organisation has this id.
    /// @param orgId The id asked for.
    error UnknownOrganization(uint64 orgId);

    /// @notice Another organisation already has this name.
    /// @param name The name asked for.
    error DuplicateOrganizationName(string name);

    /// @notice An organisation name must not be empty.
    error EmptyOrganizationName();

    /// @notice The zero address is not a valid account here.
    error ZeroAddress();

    /// @notice The account belongs to another organisation than the one acting on it.
    /// @param account The account.
    /// @param orgId The organisation it belongs to.
    error AccountInOtherOrganization(address account, uint64 orgId);

    /// @notice The account does not hold ORG_ADMIN.
    /// @param account The account.
    error NotOrganizationAdmin(address account);

    /// @notice The organisation is suspended.
    /// @param orgId The organisation.
    error OrganizationNotActive(uint64 orgId);

    /// @notice The organisation is already active.
    /// @param orgId The organisation.
    error OrganizationAlreadyActive(uint64 orgId);

    /// @notice The last active organisation cannot be suspended.
    /// @param orgId The organisation.
    error LastActiveOrganization(uint64 orgId);

    /// @notice The last ORG_ADMIN of an organisation cannot be revoked or renounced.
    /// @param orgId The organisation.
    error LastOrganizationAdmin(uint64 orgId);

    /// @notice The role cannot be granted or revoked by organisation admins.
    /// @param role The role.
    error RoleNotDelegable(bytes32 role);

    /// @notice A delegable role can only be held by a member of an organisation.
    /// @param account The account.
    error NotOrganizationMember(address account);

    /// @notice The account belongs to no organisation and has not agreed to join this one (see
    /// {acceptMembership} and {grantRoleBySig}).
    /// @param account The account.
    /// @param orgId The organisation it would join.
    error MembershipNotAccepted(address account, uint64 orgId);

    /// @notice The join signature is not the account's (or not for this organisation, role, nonce).
    /// @param account The account.
    error InvalidMembershipSignature(address account);

    /// @notice The join signature's deadline has passed.
    /// @param deadline The deadline given.
    error MembershipSignatureExpired(uint256 deadline);

    /// @dev The EIP-712 domain of join signatures: name "Consortium", version "1".
    constructor() EIP712("Consortium", "1") {}

    // ------------------------------------------------------------------------------------------
    // Role management
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Grant a delegable `role` to `account`. The caller must hold ORG_ADMIN in an active
     * organisation; `account` must be a member of that organisation, or of none and have agreed
     * to join it ({acceptMembership}; it then joins it).
     * @dev Replaces AccessControl's role-admin rule with the organisation rule. Emits {MemberAdded}
     * when the account joins, and {RoleGranted} unless the account already held the role. Reverts
     * with {MembershipNotAccepted} for an account of no organisation that has not agreed.
     * @param role The role to grant (anything but CONSORTIUM_ADMIN and DEFAULT_ADMIN_ROLE).
     * @param account The account receiving the role.
     */
    function grantRole(bytes32 role, address account) public virtual override(AccessControl, IAccessControl) {
        uint64 orgId = _checkDelegation(_msgSender(), role, account);
        if (organizationOf[account] == 0 && membershipAcceptance[account] != orgId) {
            revert MembershipNotAccepted(account, orgId);
        }
        _grantOrganizationRole(orgId, role, account);
    }

    /**
     * @notice Grant a delegable `role` to `account` with the account's own EIP-712 signature of
     * `JoinOrganization(account, orgId, role, nonce, deadline)`, `orgId` being the caller's
     * organisation and `nonce` the account's {membershipNonces} (which this uses up). The caller
     * must hold ORG_ADMIN in an active organisation; `account` must be a member of it or of none.
     * An ERC-1271 contract account may approve the digest instead of signing it.
     * @dev Emits {MemberAdded} when the account joins, and {RoleGranted} unless it already held
     * the role. Reverts with {MembershipSignatureExpired} or {InvalidMembershipSignature}.
     * @param role The role to grant.
     * @param account The account receiving the role (the signer).
     * @param deadline The last block timestamp at which the signature is accepted.
     * @param signature The account's signature of the digest ({hashJoinOrganization}).
     */
    function grantRoleBySig(bytes32 role, address account, uint256 deadline, bytes calldata signature)
        public
        virtual
    {
        uint64 orgId = _checkDelegation(_msgSender(), role, account);
        if (block.timestamp > deadline) revert MembershipSignatureExpired(deadline);
        bytes32 digest = hashJoinOrganization(account, orgId, role, membershipNonces[account], deadline);
        if (!SignatureChecker.isValidSignatureNow(account, digest, signature)) {
            revert InvalidMembershipSignature(account);
        }
        ++membershipNonces[account];
        _grantOrganizationRole(orgId, role, account);
    }

    /**
     * @notice Agree, with the caller's own transaction, to be added to organisation `orgId` by
     * one of its ORG_ADMINs ({grantRole}); `orgId` 0 withdraws the agreement. The agreement is
     * used up when the caller joins.
     * @dev Emits {MembershipAccepted}. Reverts with {UnknownOrganization} for an unknown non-zero id.
     * @param orgId The organisation, or 0.
     */
    function acceptMembership(uint64 orgId) public virtual {
        if (orgId != 0) _requireKnownOrganization(orgId);
        address account = _msgSender();
        membershipAcceptance[account] = orgId;
        emit MembershipAccepted(account, orgId);
    }

    /**
     * @notice Revoke a delegable `role` from `account`, a member of the caller's organisation. The
     * caller must hold ORG_ADMIN in an active organisation.
     * @dev Emits {RoleRevoked} if the account held the role, and {MemberRemoved} if it was its last
     * delegated role. Revoking the last ORG_ADMIN of an organisation reverts.
     * @param role The role to revoke (anything but CONSORTIUM_ADMIN and DEFAULT_ADMIN_ROLE).
     * @param account The account losing the role.
     */
    function revokeRole(bytes32 role, address account) public virtual override(AccessControl, IAccessControl) {
        _checkDelegation(_msgSender(), role, account);
        _revokeRole(role, account);
    }

    /**
     * @notice The role that administers `role`: ORG_ADMIN for every delegable role (within the
     * admin's own organisation), DEFAULT_ADMIN_ROLE (held by nobody) for the others.
     * @param role The role.
     * @return The administering role.
     */
    function getRoleAdmin(bytes32 role) public view virtual override(AccessControl, IAccessControl) returns (bytes32) {
        return _isDelegableRole(role) ? ORG_ADMIN : super.getRoleAdmin(role);
    }

    // ------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Whether `account` holds `role` and the role is in force: the account belongs to an
     * active organisation, or to none (possible only for CONSORTIUM_ADMIN).
     * @param role The role.
     * @param account The account.
     * @return True if the role is held and in force.
     */
    function hasActiveRole(bytes32 role, address account) public view virtual returns (bool) {
        if (!hasRole(role, account)) return false;
        uint64 orgId = organizationOf[account];
        return orgId == 0 || _organizations[orgId].active;
    }

    /**
     * @notice The EIP-712 digest an account signs to join organisation `orgId` with `role`.
     * @param account The account.
     * @param orgId The organisation.
     * @param role The role.
     * @param nonce The account's {membershipNonces}.
     * @param deadline The last block timestamp at which the signature is accepted.
     * @return The digest.
     */
    function hashJoinOrganization(address account, uint64 orgId, bytes32 role, uint256 nonce, uint256 deadline)
        public
        view
        virtual
        returns (bytes32)
    {
        bytes32 structHash = keccak256(abi.encode(JOIN_ORGANIZATION_TYPEHASH, account, orgId, role, nonce, deadline));
        return _hashTypedDataV4(structHash);
    }

    /**
     * @notice The EIP-712 domain separator of join signatures.
     * @return The domain separator.
     */
    function DOMAIN_SEPARATOR() external view virtual returns (bytes32) {
        return _domainSeparatorV4();
    }

    /**
     * @notice Whether `account` is a member of an active organisation.
     * @param account The account.
     * @return True if it is.
     */
    function isActiveMember(address account) public view virtual returns (bool) {
        uint64 orgId = organizationOf[account];
        return orgId != 0 && _organizations[orgId].active;
    }

    /**
     * @notice The organisation with id `orgId`; reverts with {UnknownOrganization} if none.
     * @param orgId The organisation id.
     * @return The organisation record.
     */
    function organization(uint64 orgId) public view virtual returns (Organization memory) {
        _requireKnownOrganization(orgId);
        return _organizations[orgId];
    }

    /**
     * @notice How many organisations were ever created (ids run from 1 to this number).
     * @return The count.
     */
    function organizationCount() public view virtual returns (uint64) {
        return _organizationCount;
    }

    /**
     * @notice How many organisations are currently active.
     * @return The count.
     */
    function activeOrganizationCount() public view virtual returns (uint64) {
        return _activeOrganizationCount;
    }

    /**
     * @notice The id of the organisation named exactly `name`, or 0 if there is none.
     * @param name The name.
     * @return The organisation id, or 0.
     */
    function organizationIdByName(string calldata name) public view virtual returns (uint64) {
        return _organizationIdByNameHash[keccak256(bytes(name))];
    }

    /**
     * @notice The members of an organisation (accounts holding at least one delegated role in it).
     * @dev Unbounded; meant for off-chain reads, not for use inside transactions.
     * @param orgId The organisation id.
     * @return The member accounts, in no particular order.
     */
    function membersOf(uint64 orgId) public view virtual returns (address[] memory) {
        _requireKnownOrganization(orgId);
        return _members[orgId].values();
    }

    /**
     * @notice How many members of an organisation hold ORG_ADMIN (never 0 for a created one).
     * @param orgId The organisation id.
     * @return The number of admins.
     */
    function organizationAdminCount(uint64 orgId) public view virtual returns (uint256) {
        _requireKnownOrganization(orgId);
        return _organizationAdminCount[orgId];
    }

    // ------------------------------------------------------------------------------------------
    // Internal extension points
    // ------------------------------------------------------------------------------------------

    /**
     * @dev Create an organisation named `name` with `admin` as its first member and ORG_ADMIN.
     * Emits {OrganizationAdded}, {MemberAdded} and {RoleGranted}. Returns the new id.
     */
    function _addOrganization(string memory name, address admin) internal virtual returns (uint64) {
        _checkNewOrganization(name, admin);
        uint64 orgId = ++_organizationCount;
        _organizations[orgId] = Organization({id: orgId, name: name, admin: admin, active: true});
        _organizationIdByNameHash[keccak256(bytes(name))] = orgId;
        ++_activeOrganizationCount;
        emit OrganizationAdded(orgId, name, admin);
        _grantOrganizationRole(orgId, ORG_ADMIN, admin);
        return orgId;
    }

    /**
     * @dev Suspend (`active` false) or reactivate (`active` true) organisation `orgId`. Reverts if
     * it is unknown, already in that state, or the last active organisation.
     * Emits {OrganizationSuspended} or {OrganizationReactivated}.
     */
    function _setOrganizationActive(uint64 orgId, bool active) internal virtual {
        _requireKnownOrganization(orgId);
        Organization storage org = _organizations[orgId];
        if (active) {
            if (org.active) revert OrganizationAlreadyActive(orgId);
            org.active = true;
            ++_activeOrganizationCount;
            emit OrganizationReactivated(orgId);
        } else {
            if (!org.active) revert OrganizationNotActive(orgId);
            if (_activeOrganizationCount == 1) revert LastActiveOrganization(orgId);
            org.active = false;
            --_activeOrganizationCount;
            emit OrganizationSuspended(orgId);
        }
    }

    /**
     * @dev Grant `role` to `account` inside organisation `orgId`, making the account a member
     * first if it belongs to no organisation. No caller check.
     */
    function _grantOrganizationRole(uint64 orgId, bytes32 role, address account) internal virtual {
        uint64 current = organizationOf[account];
        if (current == 0) {
            organizationOf[account] = orgId;
            delete membershipAcceptance[account];
            _members[orgId].add(account);
            emit MemberAdded(orgId, account);
        } else if (current != orgId) {
            revert AccountInOtherOrganization(account, current);
        }
        _grantRole(role, account);
    }

    /**
     * @dev Whether organisation admins may grant and revoke `role`. Override to restrict the
     * delegable roles further; CONSORTIUM_ADMIN and DEFAULT_ADMIN_ROLE must stay excluded.
     */
    function _isDelegableRole(bytes32 role) internal view virtual returns (bool) {
        return role != CONSORTIUM_ADMIN && role != DEFAULT_ADMIN_ROLE;
    }

    /**
     * @dev Check that `caller` may grant or revoke `role` for `account`; returns the caller's
     * organisation.
     */
    function _checkDelegation(address caller, bytes32 role, address account) internal view virtual returns (uint64) {
        uint64 orgId = _requireActiveOrganizationAdmin(caller);
        if (!_isDelegableRole(role)) revert RoleNotDelegable(role);
        if (account == address(0)) revert ZeroAddress();
        uint64 accountOrg = organizationOf[account];
        if (accountOrg != 0 && accountOrg != orgId) revert AccountInOtherOrganization(account, accountOrg);
        return orgId;
    }

    /**
     * @dev Revert unless `account` holds ORG_ADMIN in an active organisation; returns that
     * organisation's id.
     */
    function _requireActiveOrganizationAdmin(address account) internal view virtual returns (uint64) {
        if (!hasRole(ORG_ADMIN, account)) revert NotOrganizationAdmin(account);
        _checkRole(ORG_ADMIN, account);
        return organizationOf[account];
    }

    /// @dev Revert with {UnknownOrganization} unless `orgId` names a created organisation.
    function _requireKnownOrganization(uint64 orgId) internal view virtual {
        if (orgId == 0 || orgId > _organizationCount) revert UnknownOrganization(orgId);
    }

    /// @dev Revert unless an organisation named `name` with first admin `admin` could be created.
    function _checkNewOrganization(string memory name, address admin) internal view virtual {
        if (bytes(name).length == 0) revert EmptyOrganizationName();
        if (_organizationIdByNameHash[keccak256(bytes(name))] != 0) revert DuplicateOrganizationName(name);
        if (admin == address(0)) revert ZeroAddress();
        uint64 adminOrg = organizationOf[admin];
        if (adminOrg != 0) revert AccountInOtherOrganization(admin, adminOrg);
    }

    /// @dev Revert with {OrganizationNotActive} unless `orgId` is active (and known).
    function _requireActiveOrganization(uint64 orgId) internal view virtual {
        _requireKnownOrganization(orgId);
        if (!_organizations[orgId].active) revert OrganizationNotActive(orgId);
    }

    /// @dev Whether organisation `orgId` is active (false for unknown ids).
    function _isOrganizationActive(uint64 orgId) internal view virtual returns (bool) {
        return _organizations[orgId].active;
    }

    // ------------------------------------------------------------------------------------------
    // AccessControl hooks
    // ------------------------------------------------------------------------------------------

    /**
     * @dev A role passes only if it is held and the holder's organisation (if any) is active:
     * reverts with {AccessControlUnauthorizedAccount} or {OrganizationNotActive}.
     */
    function _checkRole(bytes32 role, address account) internal view virtual override {
        super._checkRole(role, account);
        uint64 orgId = organizationOf[account];
        if (orgId != 0 && !_organizations[orgId].active) revert OrganizationNotActive(orgId);
    }

    /// @dev Keeps the per-organisation admin count and per-account delegated-role count.
    function _grantRole(bytes32 role, address account) internal virtual override returns (bool) {
        bool delegable = _isDelegableRole(role);
        uint64 orgId = organizationOf[account];
        if (delegable && orgId == 0) revert NotOrganizationMember(account);
        bool granted = super._grantRole(role, account);
        if (granted && delegable) {
            ++_delegatedRoleCount[account];
            if (role == ORG_ADMIN) ++_organizationAdminCount[orgId];
        }
        return granted;
    }

    /**
     * @dev Refuses to remove an organisation's last ORG_ADMIN; removes the account from its
     * organisation when its last delegated role goes.
     */
    function _revokeRole(bytes32 role, address account) internal virtual override returns (bool) {
        bool revoked = super._revokeRole(role, account);
        if (revoked && _isDelegableRole(role)) {
            uint64 orgId = organizationOf[account];
            if (role == ORG_ADMIN) {
                if (_organizationAdminCount[orgId] == 1) revert LastOrganizationAdmin(orgId);
                --_organizationAdminCount[orgId];
            }
            if (--_delegatedRoleCount[account] == 0) {
                delete organizationOf[account];
                _members[orgId].remove(account);
                emit MemberRemoved(orgId, account);
            }
        }
        return revoked;
    }
}
