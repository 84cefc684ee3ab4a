// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IConsortiumAccess} from "../access/IConsortiumAccess.sol";
import {CustomerWallets} from "./CustomerWallets.sol";

/**
 * @title CustomerRegistry
 * @notice Pseudonymous customer identities shared by the organisations of a consortium. Personal
 * data never comes here: a customer is a `bytes32` id (a keyed HMAC computed off-chain), and every
 * organisation that holds an encrypted record of the customer (a "holder") keeps here only a
 * commitment to its own copy, with a version number for optimistic concurrency.
 *
 * @dev Rules:
 *
 * - Only accounts holding DATA_STEWARD in force in the Consortium ({IConsortiumAccess.hasActiveRole})
 *   write; they act for their organisation ({IConsortiumAccess.organizationOf}).
 * - {register} creates an identity (the caller's organisation is its first holder) or, if the
 *   identity exists, adds the caller's organisation as a further holder. Each holder has its own
 *   {Holding}: commitment, version (from 1), last update time.
 * - {erase} removes the caller's organisation's holding; when the last holding goes, the identity
 *   is erased for good: its wallet is unlinked and the id can never be registered again (the
 *   gateway derives a fresh id for the same person).
 * - The organisation that registered the id first is the customer's *custodian* (its holding
 *   has `registrar` set). Only a steward of the custodian may make the first link of the
 *   customer's wallet or start a delayed recovery of a lost one; rotation needs the current
 *   wallet's signature ({CustomerWallets}). Joining an existing customer ({HolderJoined}) gives
 *   no power over the wallet, nor (since consents are signed by the wallet) over consents. If
 *   the custodian erases its holding, no organisation is custodian any more: the wallet can then
 *   only be rotated by itself.
 *
 * Gas: a customer's holder organisation ids are packed four to a storage word next to a holder
 * count kept in the customer's record word, and a holding is two words; the only loop over stored
 * data is over one customer's holders (in {erase} and {holdersOf}).
 */
contract CustomerRegistry is CustomerWallets {
    /// @notice Lifecycle of a customer id.
    enum Status {
        /// Never registered.
        None,
        /// Registered and held by at least one organisation.
        Active,
        /// Erased by its last holder; can never be registered again.
        Erased
    }

    /// @notice Why {registerBatch} skipped an item.
    enum SkipReason {
        /// The caller's organisation already holds the customer (also a repeat inside the batch).
        AlreadyHeld,
        /// The customer id was erased.
        Erased,
        /// The customer id or the commitment is zero.
        Invalid
    }

    /// @notice One holder organisation's view of a customer.
    struct Holding {
        /// Commitment to the holder's current off-chain record (hash over the record and a salt).
        bytes32 commitment;
        /// Version of the record, from 1; 0 means the organisation is not a holder.
        uint64 version;
        /// Block timestamp of the last registration or update.
        uint64 updatedAt;
        /// True for the organisation that registered the id first: the customer's custodian.
        bool registrar;
    }

    /// @dev The per-customer record: one storage word.
    struct CustomerRecord {
        Status status;
        uint64 registeredAt;
        address wallet;
        uint16 holderCount;
    }

    /// @notice Role allowed to write to the registry (as named in the Consortium).
    bytes32 public constant DATA_STEWARD = keccak256("DATA_STEWARD");

    /// @notice The Consortium whose DATA_STEWARDs may write.
    IConsortiumAccess public immutable consortium;

    mapping(bytes32 customerId => CustomerRecord) private _customers;
    mapping(bytes32 customerId => mapping(uint64 orgId => Holding)) private _holdings;
    /// @dev Holder org ids of a customer, four uint64 per word, in positions 0..holderCount-1.
    mapping(bytes32 customerId => mapping(uint256 word => uint256)) private _holderWords;

    /// @notice A new customer id was registered; `orgId` is its first holder, at version 1.
    /// @param customerId The new customer id.
    /// @param orgId The registering organisation.
    /// @param commitment The organisation's commitment to its record.
    event CustomerRegistered(bytes32 indexed customerId, uint64 indexed orgId, bytes32 commitment);

    /// @notice An organisation joined an existing customer as an additional holder, at version 1.
    /// @param customerId The customer id.
    /// @param orgId The joining organisation.
    /// @param commitment The organisation's commitment to its own record.
    event HolderJoined(bytes32 indexed customerId, uint64 indexed orgId, bytes32 commitment);

    /// @notice {registerBatch} skipped an item; nothing changed for it.
    /// @param customerId The customer id of the item.
    /// @param reason Why it was skipped.
    event RegistrationSkipped(bytes32 indexed customerId, SkipReason reason);

    /// @notice A holder's commitment changed.
    /// @param customerId The customer id.
    /// @param orgId The holder organisation.
    /// @param version The new version.
    /// @param commitment The new commitment.
    event CommitmentUpdated(bytes32 indexed customerId, uint64 indexed orgId, uint64 version, bytes32 commitment);

    /// @notice A holder organisation erased its holding of a customer.
    /// @param customerId The customer id.
    /// @param orgId The organisation whose holding was erased.
    event HoldingErased(bytes32 indexed customerId, uint64 indexed orgId);

    /// @notice The last holding of a customer was erased: the id is retired for good.
    /// @param customerId The customer id.
    event CustomerErased(bytes32 indexed customerId);

    /// @notice The consortium address has no code.
    /// @param consortium The address given.
    error InvalidConsortium(address consortium);

    /// @notice The zero customer id is not valid.
    error InvalidCustomerId();

    /// @notice The zero commitment is not valid.
    error InvalidCommitment();

    /// @notice The caller's organisation already holds this customer.
    /// @param customerId The existing customer id.
    error CustomerAlreadyRegistered(bytes32 customerId);

    /// @notice The customer id was erased and cannot be used again.
    /// @param customerId The customer id.
    error CustomerIsErased(bytes32 customerId);

    /// @notice The customer id was never registered.
    /// @param customerId The customer id.
    error UnknownCustomer(bytes32 customerId);

    /// @notice The organisation does not hold the customer.
    /// @param customerId The customer id.
    /// @param orgId The organisation.
    error NotHolder(bytes32 customerId, uint64 orgId);

    /// @notice The holding is at another version than the caller expected (a concurrent update).
    /// @param customerId The customer id.
    /// @param current The current version.
    /// @param expected The version the caller expected.
    error VersionMismatch(bytes32 customerId, uint64 current, uint64 expected);

    /// @notice `ids` and `commitments` differ in length.
    error LengthMismatch();

    /**
     * @notice Deploy the registry for a consortium.
     * @param consortium_ The Consortium (anything implementing {IConsortiumAccess}).
     * @param walletRecoveryDelay_ Seconds a wallet recovery waits, cancellable by the current wallet.
     */
    constructor(IConsortiumAccess consortium_, uint256 walletRecoveryDelay_)
        EIP712("CustomerRegistry", "1")
        CustomerWallets(walletRecoveryDelay_)
    {
        if (address(consortium_).code.length == 0) revert InvalidConsortium(address(consortium_));
        consortium = consortium_;
    }

    // ------------------------------------------------------------------------------------------
    // Writes
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Register `customerId` for the caller's organisation with the commitment to its
     * record: creates the identity if it is new ({CustomerRegistered}), or adds the organisation as
     * a further holder of an active identity ({HolderJoined}); either way at version 1.
     * @dev Reverts with {CustomerAlreadyRegistered} if the organisation already holds it,
     * {CustomerIsErased} if the id was erased, {InvalidCustomerId}/{InvalidCommitment} on zero.
     * @param customerId The customer id (non-zero).
     * @param commitment The commitment to the organisation's record (non-zero).
     */
    function register(bytes32 customerId, bytes32 commitment) external virtual {
        uint64 orgId = _requireSteward();
        _requireValid(customerId, commitment);
        Status status = _customers[customerId].status;
        if (status == Status.Erased) revert CustomerIsErased(customerId);
        if (_holdings[customerId][orgId].version != 0) revert CustomerAlreadyRegistered(customerId);
        _register(customerId, commitment, orgId);
    }

    /**
     * @notice Register many customers for the caller's organisation (imports), each as in
     * {register}; an item that {register} would refuse is skipped with {RegistrationSkipped}
     * instead, so an interrupted import can simply be sent again.
     * @dev A repeat of an id inside the batch is skipped as AlreadyHeld.
     * @param ids The customer ids.
     * @param commitments The commitments, one per id.
     * @return registered How many items were registered or joined (the rest were skipped).
     */
    function registerBatch(bytes32[] calldata ids, bytes32[] calldata commitments)
        external
        virtual
        returns (uint256 registered)
    {
        uint64 orgId = _requireSteward();
        if (ids.length != commitments.length) revert LengthMismatch();
        for (uint256 i = 0; i < ids.length; ++i) {
            bytes32 customerId = ids[i];
            bytes32 commitment = commitments[i];
            if (customerId == bytes32(0) || commitment == bytes32(0)) {
                emit RegistrationSkipped(customerId, SkipReason.Invalid);
            } else if (_customers[customerId].status == Status.Erased) {
                emit RegistrationSkipped(customerId, SkipReason.Erased);
            } else if (_holdings[customerId][orgId].version != 0) {
                emit RegistrationSkipped(customerId, SkipReason.AlreadyHeld);
            } else {
                _register(customerId, commitment, orgId);
                ++registered;
            }
        }
    }

    /**
     * @notice Replace the caller's organisation's commitment to its record of `customerId` and
     * move it to the next version, if it is still at `expectedVersion`.
     * @dev Emits {CommitmentUpdated}. Reverts with {UnknownCustomer}, {CustomerIsErased},
     * {NotHolder} or {VersionMismatch}.
     * @param customerId The customer id.
     * @param commitment The commitment to the new record version (non-zero).
     * @param expectedVersion The version the caller's update is based on.
     */
    function updateCommitment(bytes32 customerId, bytes32 commitment, uint64 expectedVersion) external virtual {
        uint64 orgId = _requireSteward();
        _requireValid(customerId, commitment);
        Holding storage held = _requireHolding(customerId, orgId);
        uint64 current = held.version;
        if (current != expectedVersion) revert VersionMismatch(customerId, current, expectedVersion);
        _updateCommitment(customerId, orgId, commitment, current + 1);
    }

    /**
     * @notice Erase the caller's organisation's holding of `customerId` ({HoldingErased}). When
     * no holder remains, the customer is erased for good: its wallet is unlinked
     * ({WalletUnlinked}) and {CustomerErased} is emitted.
     * @dev Reverts with {UnknownCustomer}, {CustomerIsErased} or {NotHolder}.
     * @param customerId The customer id.
     */
    function erase(bytes32 customerId) external virtual {
        uint64 orgId = _requireSteward();
        if (customerId == bytes32(0)) revert InvalidCustomerId();
        _requireHolding(customerId, orgId);
        _eraseHolding(customerId, orgId);
    }

    // ------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------

    /**
     * @notice The state of a customer id (all zero for an unknown id).
     * @param customerId The customer id.
     * @return status Its lifecycle status.
     * @return registeredAt Block timestamp of its first registration (kept after erasure).
     * @return wallet The linked wallet, or the zero address.
     * @return holderCount How many organisations hold it.
     */
    function customer(bytes32 customerId)
        public
        view
        virtual
        returns (Status status, uint64 registeredAt, address wallet, uint256 holderCount)
    {
        CustomerRecord storage record = _customers[customerId];
        return (record.status, record.registeredAt, record.wallet, record.holderCount);
    }

    /**
     * @notice The holding of `orgId` for `customerId` (all zero if it is not a holder).
     * @param customerId The customer id.
     * @param orgId The organisation.
     * @return The holding.
     */
    function holding(bytes32 customerId, uint64 orgId) public view virtual returns (Holding memory) {
        return _holdings[customerId][orgId];
    }

    /**
     * @notice The organisations holding `customerId`, in no guaranteed order.
     * @param customerId The customer id.
     * @return orgIds The holder organisation ids.
     */
    function holdersOf(bytes32 customerId) public view virtual returns (uint64[] memory orgIds) {
        uint256 count = _customers[customerId].holderCount;
        orgIds = new uint64[](count);
        for (uint256 i = 0; i < count; ++i) {
            orgIds[i] = _holderAt(customerId, i);
        }
    }

    /**
     * @notice Whether organisation `orgId` holds `customerId`.
     * @param customerId The customer id.
     * @param orgId The organisation.
     * @return True if it does.
     */
    function isHolder(bytes32 customerId, uint64 orgId) public view virtual returns (bool) {
        return _holdings[customerId][orgId].version != 0;
    }

    /**
     * @notice Whether `customerId` was ever registered (it is then Active or Erased, and cannot be
     * created anew).
     * @param customerId The customer id.
     * @return True if it was.
     */
    function exists(bytes32 customerId) public view virtual returns (bool) {
        return _customers[customerId].status != Status.None;
    }

    /**
     * @notice The EIP-712 domain separator of this contract (see also {eip712Domain}).
     * @return The domain separator.
     */
    function DOMAIN_SEPARATOR() external view virtual returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ------------------------------------------------------------------------------------------
    // Internal extension points
    // ------------------------------------------------------------------------------------------

    /**
     * @dev Revert with {IAccessControl.AccessControlUnauthorizedAccount} unless the caller holds
     * DATA_STEWARD in force; returns the caller's organisation.
     */
    function _requireSteward() internal view virtual returns (uint64 orgId) {
        address caller = msg.sender;
        if (consortium.hasActiveRole(DATA_STEWARD, caller)) orgId = consortium.organizationOf(caller);
        if (orgId == 0) revert IAccessControl.AccessControlUnauthorizedAccount(caller, DATA_STEWARD);
    }

    /// @dev Revert with {InvalidCustomerId} or {InvalidCommitment} on a zero value.
    function _requireValid(bytes32 customerId, bytes32 commitment) internal pure virtual {
        if (customerId == bytes32(0)) revert InvalidCustomerId();
        if (commitment == bytes32(0)) revert InvalidCommitment();
    }

    /**
     * @dev Revert unless `customerId` is active and `orgId` holds it ({UnknownCustomer},
     * {CustomerIsErased}, {NotHolder}); returns the holding.
     */
    function _requireHolding(bytes32 customerId, uint64 orgId) internal view virtual returns (Holding storage held) {
        Status status = _customers[customerId].status;
        if (status == Status.None) revert UnknownCustomer(customerId);
        if (status == Status.Erased) revert CustomerIsErased(customerId);
        held = _holdings[customerId][orgId];
        if (held.version == 0) revert NotHolder(customerId, orgId);
    }

    /// @dev See {CustomerWallets-_walletOf}.
    function _walletOf(bytes32 customerId) internal view virtual override returns (address) {
        return _customers[customerId].wallet;
    }

    /// @dev See {CustomerWallets-_setWallet}.
    function _setWallet(bytes32 customerId, address wallet) internal virtual override {
        _customers[customerId].wallet = wallet;
    }

    /// @dev See {CustomerWallets-_requireActiveCustomer}: {UnknownCustomer} or {CustomerIsErased}.
    function _requireActiveCustomer(bytes32 customerId) internal view virtual override {
        Status status = _customers[customerId].status;
        if (status == Status.None) revert UnknownCustomer(customerId);
        if (status == Status.Erased) revert CustomerIsErased(customerId);
    }

    /**
     * @dev See {CustomerWallets-_requireCustodian}: the caller is a DATA_STEWARD in force (else
     * the role error) of a holder ({NotHolder}) that registered the id first ({NotWalletCustodian}).
     */
    function _requireCustodian(bytes32 customerId) internal view virtual override returns (uint64 orgId) {
        orgId = _requireSteward();
        if (customerId == bytes32(0)) revert InvalidCustomerId();
        if (!_requireHolding(customerId, orgId).registrar) revert NotWalletCustodian(customerId, orgId);
    }

    /// @dev See {CustomerWallets-_isCustodianSteward}.
    function _isCustodianSteward(bytes32 customerId, address account) internal view virtual override returns (bool) {
        if (!consortium.hasActiveRole(DATA_STEWARD, account)) return false;
        return _holdings[customerId][consortium.organizationOf(account)].registrar;
    }

    /**
     * @dev Make `orgId` a holder of `customerId` at version 1, creating the identity if it is new.
     * No checks: the id must not be erased and `orgId` must not hold it yet.
     * Emits {CustomerRegistered} or {HolderJoined}.
     */
    function _register(bytes32 customerId, bytes32 commitment, uint64 orgId) internal virtual {
        CustomerRecord storage record = _customers[customerId];
        uint64 now_ = uint64(block.timestamp);
        bool first = record.status == Status.None;
        _holdings[customerId][orgId] = Holding({commitment: commitment, version: 1, updatedAt: now_, registrar: first});
        if (first) {
            record.status = Status.Active;
            record.registeredAt = now_;
            _setHolderAt(customerId, 0, orgId);
            record.holderCount = 1;
            emit CustomerRegistered(customerId, orgId, commitment);
        } else {
            uint16 count = record.holderCount;
            _setHolderAt(customerId, count, orgId);
            record.holderCount = count + 1;
            emit HolderJoined(customerId, orgId, commitment);
        }
    }

    /// @dev Set the holding of `orgId` to `commitment` at `version`. No checks. Emits {CommitmentUpdated}.
    function _updateCommitment(bytes32 customerId, uint64 orgId, bytes32 commitment, uint64 version)
        internal
        virtual
    {
        Holding storage held = _holdings[customerId][orgId];
        held.commitment = commitment;
        (held.version, held.updatedAt) = (version, uint64(block.timestamp));
        emit CommitmentUpdated(customerId, orgId, version, commitment);
    }

    /**
     * @dev Remove the holding of `orgId` (a holder) from `customerId`; erase the customer when it
     * was the last. No checks. Emits {HoldingErased}, and then {WalletUnlinked} (if a wallet was
     * linked) and {CustomerErased} for the last holder.
     */
    function _eraseHolding(bytes32 customerId, uint64 orgId) internal virtual {
        CustomerRecord storage record = _customers[customerId];
        uint256 last = record.holderCount - 1;
        for (uint256 i = 0; i < last; ++i) {
            if (_holderAt(customerId, i) == orgId) {
                _setHolderAt(customerId, i, _holderAt(customerId, last));
                break;
            }
        }
        _setHolderAt(customerId, last, 0);
        record.holderCount = uint16(last);
        delete _holdings[customerId][orgId];
        emit HoldingErased(customerId, orgId);
        if (last == 0) {
            record.status = Status.Erased;
            _unlinkWallet(customerId);
            emit CustomerErased(customerId);
        }
    }

    /// @dev The holder org id at position `index` of `customerId`'s packed holder list.
    function _holderAt(bytes32 customerId, uint256 index) internal view virtual returns (uint64) {
        return uint64(_holderWords[customerId][index >> 2] >> ((index & 3) << 6));
    }

    /// @dev Write `orgId` at position `index` of `customerId`'s packed holder list.
    function _setHolderAt(bytes32 customerId, uint256 index, uint64 orgId) internal virtual {
        mapping(uint256 => uint256) storage words = _holderWords[customerId];
        uint256 shift = (index & 3) << 6;
        uint256 word = words[index >> 2];
        words[index >> 2] = (word & ~(uint256(type(uint64).max) << shift)) | (uint256(orgId) << shift);
    }
}
