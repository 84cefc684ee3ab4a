// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IConsortiumAccess} from "../access/IConsortiumAccess.sol";
import {IOrganizationDirectory} from "../access/IOrganizationDirectory.sol";
import {ICustomerDirectory} from "../customers/ICustomerDirectory.sol";
import {PurposeRegistry} from "./PurposeRegistry.sol";

/**
 * @title ConsentLedger
 * @notice Consent of customers to processing purposes, per processor organisation, decided by the
 * customers themselves with the wallet registered for them in the CustomerRegistry, and kept as a
 * tamper-evident history (GDPR Art. 7(1): the controller must be able to prove consent).
 *
 * @dev A consent is held per (customer id, purpose id, processor organisation id). Every change is a
 * {ConsentChange} (grant or revoke, the notice version it answers, optional expiry, per-customer
 * nonce, deadline) made in one of two ways:
 *
 * 1. {setConsent}: the customer's registered wallet sends the transaction itself;
 * 2. {setConsentBySig} / {setConsentsBySig}: the wallet signs the change as EIP-712 typed data
 *    (`eth_signTypedData_v4`; an ERC-1271 contract wallet may approve it instead) and an account
 *    holding RELAYER in force in the Consortium submits it, one or many per transaction.
 *
 * Either way the change must carry the customer's current {nonces} (which it consumes) and a
 * deadline not yet passed and at most {maxSignatureLifetime} ahead (so that no relayer can hold
 * a signed change back for long), and its receipt hash is its EIP-712 digest
 * ({hashConsentChange}), stored with the consent and emitted in {ConsentChanged}. A grant names
 * the notice version the customer was shown and is refused if that is not the purpose's current
 * one ({NoticeVersionMismatch}): a grant is never applied to a notice the customer did not see.
 *
 * Withdrawing is never harder than granting (Art. 7(3)): a revocation needs only a known purpose
 * and a known organisation (whatever notice version it names, and even if the purpose is retired
 * or the organisation suspended), while a grant needs an active purpose at the signed notice
 * version, an active organisation, and an expiry, if any, in the future.
 *
 * A consent counts ({hasConsent}) while it is granted, not expired, and given to the current
 * version of the purpose's notice: a new notice version ({PurposeRegistry.updateNotice}) or the
 * retirement of the purpose voids it until the customer grants it again.
 *
 * Gas: a consent is two storage words (the state word and the receipt hash) and the nonce one;
 * a batch looks each customer, purpose and organisation up once for a run of changes that share
 * them (see {Lookups}).
 */
contract ConsentLedger is EIP712 {
    /// @notice How a change was expressed, as recorded in {ConsentChanged}.
    enum Method {
        /// The customer's wallet sent the transaction itself ({setConsent}).
        WalletTransaction,
        /// The customer's wallet signed EIP-712 typed data that a relayer submitted.
        Signature
    }

    /// @notice The consent of one customer to one purpose for one processor organisation.
    struct Consent {
        /// True if granted, false if revoked (or never given).
        bool granted;
        /// The purpose's notice version current when the change was made.
        uint64 purposeVersion;
        /// Block timestamp of the change that set this state (the grant, or the revocation).
        uint64 grantedAt;
        /// Block timestamp from which the grant no longer counts; 0 = no expiry.
        uint64 expiresAt;
        /// EIP-712 digest of the change that set this state ({hashConsentChange}).
        bytes32 receiptHash;
    }

    /**
     * @notice A change of consent, as signed by the customer's wallet (EIP-712 primary type).
     * @dev A grant is applied only at the notice version it names; a revocation at any (the
     * version current when it is applied is recorded). The deadline is at most
     * {maxSignatureLifetime} ahead, so the window between signing and applying stays small.
     */
    struct ConsentChange {
        /// The customer id (as in the CustomerRegistry).
        bytes32 customerId;
        /// The purpose id (as in the PurposeRegistry).
        bytes32 purposeId;
        /// The purpose's notice version the customer was shown (must be current for a grant).
        uint64 purposeVersion;
        /// The processor organisation id (as in the Consortium).
        uint64 orgId;
        /// True to grant, false to revoke.
        bool granted;
        /// For a grant, the block timestamp from which it no longer counts (0 = no expiry); 0 for a
        /// revocation.
        uint64 expiresAt;
        /// The customer's current nonce ({nonces}).
        uint256 nonce;
        /// The last block timestamp at which the change is accepted.
        uint256 deadline;
    }

    /**
     * @dev What a call has looked up so far, so that a batch asks the other contracts once per
     * customer run, purpose and organisation. All-zero entries are correct answers for the zero
     * ids (never registered, defined or created), so no "loaded" flags are needed.
     */
    struct Lookups {
        bytes32 customerId;
        uint8 customerStatus;
        address wallet;
        bytes32[4] purposeIds;
        uint256[4] purposeStates; // version | active << 64
        uint64[4] orgIds;
        uint8[4] orgStates; // ORG_UNKNOWN, ORG_SUSPENDED or ORG_ACTIVE
        uint256 purposeCursor;
        uint256 orgCursor;
    }

    /// @notice Role allowed to submit signed changes (as named in the Consortium).
    bytes32 public constant RELAYER = keccak256("RELAYER");

    /// @notice EIP-712 type hash of {ConsentChange}.
    bytes32 public constant CONSENT_CHANGE_TYPEHASH = keccak256(
        "ConsentChange(bytes32 customerId,bytes32 purposeId,uint64 purposeVersion,uint64 orgId,"
        "bool granted,uint64 expiresAt,uint256 nonce,uint256 deadline)"
    );

    /**
     * @notice Gas given to an ERC-1271 contract wallet's `isValidSignature`. A call that cannot
     * be given this much reverts the whole transaction ({InsufficientGasForWallet}) rather than
     * reject a change for want of gas.
     */
    uint256 public constant ERC1271_GAS_LIMIT = 500_000;

    uint8 private constant CUSTOMER_ACTIVE = 1;
    uint8 private constant CUSTOMER_ERASED = 2;
    uint8 private constant ORG_UNKNOWN = 0;
    uint8 private constant ORG_SUSPENDED = 1;
    uint8 private constant ORG_ACTIVE = 2;

    /// @notice The Consortium: RELAYER grants and organisations.
    IConsortiumAccess public immutable consortium;
    /// @notice The CustomerRegistry: customer ids and their wallets.
    ICustomerDirectory public immutable customerRegistry;
    /// @notice The PurposeRegistry: purposes and their notice versions.
    PurposeRegistry public immutable purposeRegistry;
    /// @notice How far ahead of the block's timestamp a change's deadline may lie, in seconds.
    uint256 public immutable maxSignatureLifetime;

    mapping(bytes32 customerId => mapping(bytes32 purposeId => mapping(uint64 orgId => Consent))) private _consents;
    mapping(bytes32 customerId => uint256) private _nonces;

    /**
     * @notice A consent was granted or revoked.
     * @param customerId The customer id.
     * @param purposeId The purpose id.
     * @param orgId The processor organisation id.
     * @param granted True for a grant, false for a revocation.
     * @param purposeVersion The purpose's notice version the change applies to.
     * @param expiresAt For a grant, when it stops counting (0 = never); 0 for a revocation.
     * @param nonce The customer nonce the change consumed (the next one is `nonce + 1`).
     * @param receiptHash The change's EIP-712 digest ({hashConsentChange}).
     * @param method How the change was expressed.
     * @param submitter The account that sent the transaction (the wallet, or the relayer).
     */
    event ConsentChanged(
        bytes32 indexed customerId,
        bytes32 indexed purposeId,
        uint64 indexed orgId,
        bool granted,
        uint64 purposeVersion,
        uint64 expiresAt,
        uint256 nonce,
        bytes32 receiptHash,
        Method method,
        address submitter
    );

    /**
     * @notice {setConsentsBySig} skipped a change; nothing changed for it.
     * @param customerId The customer id of the change.
     * @param nonce The nonce the change carried.
     * @param errorSelector The selector of the error {setConsentBySig} would have reverted with.
     */
    event ConsentChangeRejected(bytes32 indexed customerId, uint256 nonce, bytes4 errorSelector);

    /// @notice The consortium address has no code.
    /// @param consortium The address given.
    error InvalidConsortium(address consortium);

    /// @notice The customer registry address has no code.
    /// @param customerRegistry The address given.
    error InvalidCustomerRegistry(address customerRegistry);

    /// @notice The purpose registry address has no code.
    /// @param purposeRegistry The address given.
    error InvalidPurposeRegistry(address purposeRegistry);

    /// @notice `changes` and `signatures` differ in length.
    error LengthMismatch();

    /// @notice The change's deadline has passed.
    /// @param deadline The deadline (a block timestamp).
    error DeadlineExpired(uint256 deadline);

    /// @notice The change's deadline lies more than {maxSignatureLifetime} ahead of the block.
    /// @param deadline The deadline (a block timestamp).
    /// @param maxLifetime The {maxSignatureLifetime}, in seconds.
    error DeadlineTooFar(uint256 deadline, uint256 maxLifetime);

    /// @notice A grant names another notice version than the purpose's current one.
    /// @param purposeId The purpose id.
    /// @param current The purpose's current notice version.
    /// @param signed The version the change names.
    error NoticeVersionMismatch(bytes32 purposeId, uint64 current, uint64 signed);

    /// @notice The maximum signature lifetime must not be zero.
    error InvalidSignatureLifetime();

    /// @notice The customer id was never registered.
    /// @param customerId The customer id.
    error UnknownCustomer(bytes32 customerId);

    /// @notice The customer id was erased.
    /// @param customerId The customer id.
    error CustomerIsErased(bytes32 customerId);

    /// @notice No wallet is registered for the customer.
    /// @param customerId The customer id.
    error CustomerWithoutWallet(bytes32 customerId);

    /// @notice The sender of a {setConsent} transaction is not the customer's registered wallet.
    /// @param customerId The customer id.
    /// @param account The sender.
    error NotCustomerWallet(bytes32 customerId, address account);

    /// @notice The signature is not the customer's registered wallet's approval of this change.
    /// @param customerId The customer id.
    /// @param wallet The customer's registered wallet.
    error InvalidConsentSignature(bytes32 customerId, address wallet);

    /// @notice The change does not carry the customer's current nonce (a replay, or out of order).
    /// @param customerId The customer id.
    /// @param expected The current nonce.
    /// @param given The nonce of the change.
    error InvalidNonce(bytes32 customerId, uint256 expected, uint256 given);

    /// @notice No purpose has this id.
    /// @param purposeId The purpose id.
    error UnknownPurpose(bytes32 purposeId);

    /// @notice The purpose is retired; it can no longer be granted.
    /// @param purposeId The purpose id.
    error PurposeIsRetired(bytes32 purposeId);

    /// @notice No organisation has this id.
    /// @param orgId The organisation id.
    error UnknownOrganization(uint64 orgId);

    /// @notice The organisation is suspended; consent to it can only be revoked.
    /// @param orgId The organisation id.
    error OrganizationNotActive(uint64 orgId);

    /// @notice A grant's expiry is not after the current block timestamp.
    /// @param expiresAt The expiry given.
    error ExpiryInPast(uint64 expiresAt);

    /// @notice A revocation carries an expiry (it must be 0).
    /// @param expiresAt The expiry given.
    error ExpiryOnRevocation(uint64 expiresAt);

    /// @notice Too little gas is left to give the contract wallet's ERC-1271 check its {ERC1271_GAS_LIMIT}.
    /// @param wallet The contract wallet.
    error InsufficientGasForWallet(address wallet);

    /**
     * @notice Deploy the ledger.
     * @param consortium_ The Consortium (RELAYER grants, organisations).
     * @param customerRegistry_ The CustomerRegistry (customer ids, wallets).
     * @param purposeRegistry_ The PurposeRegistry (purposes, notice versions).
     * @param maxSignatureLifetime_ How far ahead a change's deadline may lie, in seconds (non-zero).
     */
    constructor(
        IConsortiumAccess consortium_,
        ICustomerDirectory customerRegistry_,
        PurposeRegistry purposeRegistry_,
        uint256 maxSignatureLifetime_
    ) EIP712("ConsentLedger", "1") {
        if (maxSignatureLifetime_ == 0) revert InvalidSignatureLifetime();
        if (address(consortium_).code.length == 0) revert InvalidConsortium(address(consortium_));
        if (address(customerRegistry_).code.length == 0) {
            revert InvalidCustomerRegistry(address(customerRegistry_));
        }
        if (address(purposeRegistry_).code.length == 0) revert InvalidPurposeRegistry(address(purposeRegistry_));
        consortium = consortium_;
        customerRegistry = customerRegistry_;
        purposeRegistry = purposeRegistry_;
        maxSignatureLifetime = maxSignatureLifetime_;
    }

    // ------------------------------------------------------------------------------------------
    // Writes
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Apply `change`, sent by the customer's registered wallet itself.
     * @dev Emits {ConsentChanged} with method WalletTransaction. Reverts with {DeadlineExpired},
     * {DeadlineTooFar}, {UnknownCustomer}, {CustomerIsErased}, {CustomerWithoutWallet},
     * {NotCustomerWallet}, {InvalidNonce}, {UnknownPurpose}, {PurposeIsRetired},
     * {NoticeVersionMismatch}, {UnknownOrganization},
     * {OrganizationNotActive}, {ExpiryInPast} or {ExpiryOnRevocation}, checked in this order.
     * @param change The change.
     * @return receiptHash The change's receipt hash (its EIP-712 digest).
     */
    function setConsent(ConsentChange calldata change) external virtual returns (bytes32 receiptHash) {
        Lookups memory lookups;
        bytes memory failure;
        (failure, receiptHash) = _applyChange(change, msg.data[0:0], Method.WalletTransaction, lookups);
        if (failure.length != 0) _revertWith(failure);
    }

    /**
     * @notice Apply `change`, signed by the customer's registered wallet, on behalf of the
     * customer. The caller must hold RELAYER in force.
     * @dev Emits {ConsentChanged} with method Signature. Reverts with
     * {IAccessControl.AccessControlUnauthorizedAccount}, then as {setConsent} but with
     * {InvalidConsentSignature} in place of {NotCustomerWallet}, or {InsufficientGasForWallet}.
     * @param change The change.
     * @param signature The wallet's EIP-712 signature of `change` (65 bytes `r,s,v` for an EOA).
     * @return receiptHash The change's receipt hash (its EIP-712 digest).
     */
    function setConsentBySig(ConsentChange calldata change, bytes calldata signature)
        external
        virtual
        returns (bytes32 receiptHash)
    {
        _requireRelayer();
        Lookups memory lookups;
        bytes memory failure;
        (failure, receiptHash) = _applyChange(change, signature, Method.Signature, lookups);
        if (failure.length != 0) _revertWith(failure);
    }

    /**
     * @notice Apply many signed changes in order, each as {setConsentBySig}; a change that
     * {setConsentBySig} would refuse is skipped with {ConsentChangeRejected} instead, and the
     * others still apply. The caller must hold RELAYER in force.
     * @dev Changes of one customer must come in nonce order; once one is skipped, its successors
     * are skipped too ({InvalidNonce}). Reverts only with
     * {IAccessControl.AccessControlUnauthorizedAccount}, {LengthMismatch} or
     * {InsufficientGasForWallet}.
     * @param changes The changes.
     * @param signatures The wallets' signatures, one per change.
     * @return applied How many changes were applied (the rest were skipped).
     */
    function setConsentsBySig(ConsentChange[] calldata changes, bytes[] calldata signatures)
        external
        virtual
        returns (uint256 applied)
    {
        _requireRelayer();
        uint256 count = changes.length;
        if (count != signatures.length) revert LengthMismatch();
        Lookups memory lookups;
        uint256 freeMemory;
        assembly ("memory-safe") {
            freeMemory := mload(0x40)
        }
        for (uint256 i = 0; i < count; ++i) {
            ConsentChange calldata change = changes[i];
            (bytes memory failure,) = _applyChange(change, signatures[i], Method.Signature, lookups);
            if (failure.length == 0) {
                ++applied;
            } else {
                emit ConsentChangeRejected(change.customerId, change.nonce, bytes4(failure));
            }
            // Nothing allocated for one change outlives it: reuse its memory for the next, so
            // that memory (whose cost grows with the square of its size) stays flat.
            assembly ("memory-safe") {
                mstore(0x40, freeMemory)
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Whether `customerId` consents to `purposeId` for `orgId` now: the consent is granted,
     * not expired (`block.timestamp < expiresAt` when an expiry is set), given to the purpose's
     * current notice version, and the purpose is not retired.
     * @dev Neither the customer's erasure nor the organisation's suspension is looked at: they
     * are the CustomerRegistry's and the Consortium's to enforce (an erased customer's records are
     * gone, and no change can be made for it any more).
     * @param customerId The customer id.
     * @param purposeId The purpose id.
     * @param orgId The processor organisation id.
     * @return True if the consent counts.
     */
    function hasConsent(bytes32 customerId, bytes32 purposeId, uint64 orgId) public view virtual returns (bool) {
        Consent storage stored = _consents[customerId][purposeId][orgId];
        if (!stored.granted) return false;
        uint64 expiresAt = stored.expiresAt;
        if (expiresAt != 0 && block.timestamp >= expiresAt) return false;
        (uint64 version, bool active) = purposeRegistry.purposeStatus(purposeId);
        return active && stored.purposeVersion == version;
    }

    /**
     * @notice The stored consent of `customerId` to `purposeId` for `orgId` (all zero if no change
     * was ever made). See {hasConsent} for whether it counts now.
     * @param customerId The customer id.
     * @param purposeId The purpose id.
     * @param orgId The processor organisation id.
     * @return The consent.
     */
    function consent(bytes32 customerId, bytes32 purposeId, uint64 orgId)
        public
        view
        virtual
        returns (Consent memory)
    {
        return _consents[customerId][purposeId][orgId];
    }

    // --- The processing rule (one definition; the gateway's read model mirrors it) -----------

    /**
     * @notice Whether organisation `orgId` may process `customerId`'s personal data under
     * `purposeId` now: the purpose is active and controlled by `orgId` or shared with it
     * ({PurposeRegistry.purposeUse}), and, when its lawful basis is consent, the customer's
     * consent to it for `orgId` counts ({hasConsent}).
     * @param customerId The customer id.
     * @param purposeId The purpose id.
     * @param orgId The processing organisation.
     * @return {PurposeRegistry.Processing.Allowed}, or why not.
     */
    function mayProcess(bytes32 customerId, bytes32 purposeId, uint64 orgId)
        public
        view
        virtual
        returns (PurposeRegistry.Processing)
    {
        (PurposeRegistry.Processing answer, bool needsConsent) = purposeRegistry.purposeUse(purposeId, orgId);
        if (answer != PurposeRegistry.Processing.Allowed || !needsConsent) return answer;
        return hasConsent(customerId, purposeId, orgId)
            ? PurposeRegistry.Processing.Allowed
            : PurposeRegistry.Processing.NoLiveConsent;
    }

    /**
     * @notice The nonce the next change of `customerId` must carry.
     * @param customerId The customer id.
     * @return The nonce.
     */
    function nonces(bytes32 customerId) public view virtual returns (uint256) {
        return _nonces[customerId];
    }

    /**
     * @notice The EIP-712 digest of `change` in this contract's domain: what the wallet signs, and
     * the change's receipt hash.
     * @param change The change.
     * @return The digest.
     */
    function hashConsentChange(ConsentChange calldata change) public view virtual returns (bytes32) {
        return _hashConsentChange(change);
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
     * RELAYER in force.
     */
    function _requireRelayer() internal view virtual {
        if (!consortium.hasActiveRole(RELAYER, msg.sender)) {
            revert IAccessControl.AccessControlUnauthorizedAccount(msg.sender, RELAYER);
        }
    }

    /**
     * @dev Check `change` (made by `method`, with `signature` for Method.Signature) and apply it
     * if it passes ({_authorizeChange}, then {_validateChange}). Returns the ABI-encoded error the
     * single-change functions revert with, or empty bytes once applied, and the receipt hash.
     */
    function _applyChange(
        ConsentChange calldata change,
        bytes calldata signature,
        Method method,
        Lookups memory lookups
    ) internal virtual returns (bytes memory failure, bytes32 receiptHash) {
        (failure, receiptHash) = _authorizeChange(change, signature, method, lookups);
        if (failure.length != 0) return (failure, 0);
        uint64 purposeVersion;
        (failure, purposeVersion) = _validateChange(change, lookups);
        if (failure.length != 0) return (failure, 0);
        _nonces[change.customerId] = change.nonce + 1;
        _recordConsent(change, purposeVersion, receiptHash, method);
    }

    /**
     * @dev Check that `change` is before its deadline and comes from the registered wallet of an
     * active customer: sent by it (Method.WalletTransaction) or approved by `signature`
     * (Method.Signature). Returns the ABI-encoded error, or empty bytes, and the receipt hash.
     */
    function _authorizeChange(
        ConsentChange calldata change,
        bytes calldata signature,
        Method method,
        Lookups memory lookups
    ) internal view virtual returns (bytes memory failure, bytes32 receiptHash) {
        if (block.timestamp > change.deadline) {
            return (abi.encodeWithSelector(DeadlineExpired.selector, change.deadline), 0);
        }
        if (change.deadline > block.timestamp + maxSignatureLifetime) {
            return (abi.encodeWithSelector(DeadlineTooFar.selector, change.deadline, maxSignatureLifetime), 0);
        }
        bytes32 customerId = change.customerId;
        (uint8 status, address wallet) = _lookupCustomer(customerId, lookups);
        if (status != CUSTOMER_ACTIVE) {
            bytes4 selector = status == CUSTOMER_ERASED ? CustomerIsErased.selector : UnknownCustomer.selector;
            return (abi.encodeWithSelector(selector, customerId), 0);
        }
        if (wallet == address(0)) return (abi.encodeWithSelector(CustomerWithoutWallet.selector, customerId), 0);
        receiptHash = _hashConsentChange(change);
        if (method == Method.WalletTransaction) {
            if (msg.sender != wallet) {
                return (abi.encodeWithSelector(NotCustomerWallet.selector, customerId, msg.sender), 0);
            }
        } else if (!_isValidCustomerSignature(wallet, receiptHash, signature)) {
            return (abi.encodeWithSelector(InvalidConsentSignature.selector, customerId, wallet), 0);
        }
    }

    /**
     * @dev Check that `change` carries the customer's current nonce, names a known purpose and a
     * known organisation (for a grant: both active, and the purpose's current notice version),
     * and an expiry that fits. Returns the
     * ABI-encoded error, or empty bytes, and the purpose's current version.
     */
    function _validateChange(ConsentChange calldata change, Lookups memory lookups)
        internal
        view
        virtual
        returns (bytes memory failure, uint64 purposeVersion)
    {
        uint256 nonce = _nonces[change.customerId];
        if (change.nonce != nonce) {
            return (abi.encodeWithSelector(InvalidNonce.selector, change.customerId, nonce, change.nonce), 0);
        }
        bool granting = change.granted;
        bool active;
        (purposeVersion, active) = _lookupPurpose(change.purposeId, lookups);
        if (purposeVersion == 0) return (abi.encodeWithSelector(UnknownPurpose.selector, change.purposeId), 0);
        if (granting && !active) return (abi.encodeWithSelector(PurposeIsRetired.selector, change.purposeId), 0);
        if (granting && change.purposeVersion != purposeVersion) {
            return (
                abi.encodeWithSelector(
                    NoticeVersionMismatch.selector, change.purposeId, purposeVersion, change.purposeVersion
                ),
                0
            );
        }

        uint8 orgState = _lookupOrganization(change.orgId, lookups);
        if (orgState == ORG_UNKNOWN) return (abi.encodeWithSelector(UnknownOrganization.selector, change.orgId), 0);
        if (granting && orgState != ORG_ACTIVE) {
            return (abi.encodeWithSelector(OrganizationNotActive.selector, change.orgId), 0);
        }

        uint64 expiresAt = change.expiresAt;
        if (expiresAt != 0) {
            if (!granting) return (abi.encodeWithSelector(ExpiryOnRevocation.selector, expiresAt), 0);
            if (expiresAt <= block.timestamp) return (abi.encodeWithSelector(ExpiryInPast.selector, expiresAt), 0);
        }
    }

    /**
     * @dev Store the consent set by `change` (checked) at purpose version `purposeVersion` with
     * `receiptHash`. No checks; does not touch the nonce. Emits {ConsentChanged}.
     */
    function _recordConsent(ConsentChange calldata change, uint64 purposeVersion, bytes32 receiptHash, Method method)
        internal
        virtual
    {
        _consents[change.customerId][change.purposeId][change.orgId] = Consent({
            granted: change.granted,
            purposeVersion: purposeVersion,
            grantedAt: uint64(block.timestamp),
            expiresAt: change.expiresAt,
            receiptHash: receiptHash
        });
        emit ConsentChanged(
            change.customerId,
            change.purposeId,
            change.orgId,
            change.granted,
            purposeVersion,
            change.expiresAt,
            change.nonce,
            receiptHash,
            method,
            msg.sender
        );
    }

    /// @dev The EIP-712 digest of `change` in this contract's domain.
    function _hashConsentChange(ConsentChange calldata change) internal view virtual returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    CONSENT_CHANGE_TYPEHASH,
                    change.customerId,
                    change.purposeId,
                    change.purposeVersion,
                    change.orgId,
                    change.granted,
                    change.expiresAt,
                    change.nonce,
                    change.deadline
                )
            )
        );
    }

    /**
     * @dev Whether `signature` is `wallet`'s approval of `digest`: an ECDSA signature by `wallet`
     * (malleable and malformed signatures refused), or else, for a contract wallet, an ERC-1271
     * `isValidSignature` approval given within {ERC1271_GAS_LIMIT} gas.
     *
     * NOTE: The rule of OpenZeppelin's `SignatureChecker.isValidSignatureNow`, which is not used
     * because in v5.4 it pulls in `Bytes` (MCOPY), which would make the contract Cancun-only.
     */
    function _isValidCustomerSignature(address wallet, bytes32 digest, bytes calldata signature)
        internal
        view
        virtual
        returns (bool)
    {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err == ECDSA.RecoverError.NoError && recovered == wallet) return true;
        if (wallet.code.length == 0) return false;
        // Without this, a batch short of gas would silently reject a valid contract-wallet change
        // (and eth_estimateGas could settle on such an amount); 63/64 of what is left goes along.
        if (gasleft() < ERC1271_GAS_LIMIT + ERC1271_GAS_LIMIT / 63 + 10_000) revert InsufficientGasForWallet(wallet);
        bytes memory payload = abi.encodeCall(IERC1271.isValidSignature, (digest, signature));
        bool success;
        uint256 returnSize;
        bytes32 returned;
        assembly ("memory-safe") {
            // Only the first word of the answer is copied, so a wallet cannot make us pay for more.
            success := staticcall(ERC1271_GAS_LIMIT, wallet, add(payload, 0x20), mload(payload), 0, 0x20)
            returnSize := returndatasize()
            returned := mload(0)
        }
        return success && returnSize >= 32 && returned == bytes32(IERC1271.isValidSignature.selector);
    }

    /// @dev The status and wallet of `customerId`, from `lookups` when it is the last customer asked.
    function _lookupCustomer(bytes32 customerId, Lookups memory lookups)
        internal
        view
        virtual
        returns (uint8 status, address wallet)
    {
        if (customerId == lookups.customerId) return (lookups.customerStatus, lookups.wallet);
        (status,, wallet,) = customerRegistry.customer(customerId);
        lookups.customerId = customerId;
        lookups.customerStatus = status;
        lookups.wallet = wallet;
    }

    /// @dev The current version of `purposeId` (0 if unknown) and whether it is active, cached in `lookups`.
    function _lookupPurpose(bytes32 purposeId, Lookups memory lookups)
        internal
        view
        virtual
        returns (uint64 version, bool active)
    {
        for (uint256 i = 0; i < 4; ++i) {
            if (lookups.purposeIds[i] == purposeId) {
                uint256 state = lookups.purposeStates[i];
                return (uint64(state), state >> 64 != 0);
            }
        }
        (version, active) = purposeRegistry.purposeStatus(purposeId);
        uint256 slot = lookups.purposeCursor++ & 3;
        lookups.purposeIds[slot] = purposeId;
        lookups.purposeStates[slot] = uint256(version) | (active ? 1 << 64 : 0);
    }

    /// @dev Whether organisation `orgId` is unknown, suspended or active, cached in `lookups`.
    function _lookupOrganization(uint64 orgId, Lookups memory lookups) internal view virtual returns (uint8 state) {
        for (uint256 i = 0; i < 4; ++i) {
            if (lookups.orgIds[i] == orgId) return lookups.orgStates[i];
        }
        IOrganizationDirectory directory = IOrganizationDirectory(address(consortium));
        if (orgId != 0 && orgId <= directory.organizationCount()) {
            state = directory.organization(orgId).active ? ORG_ACTIVE : ORG_SUSPENDED;
        }
        uint256 slot = lookups.orgCursor++ & 3;
        lookups.orgIds[slot] = orgId;
        lookups.orgStates[slot] = state;
    }

    /// @dev Revert with the ABI-encoded error `failure`.
    function _revertWith(bytes memory failure) internal pure virtual {
        assembly ("memory-safe") {
            revert(add(failure, 0x20), mload(failure))
        }
    }
}
