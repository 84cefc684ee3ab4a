// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ICustomerWallets} from "./ICustomerWallets.sol";

/**
 * @title CustomerWallets
 * @notice The customer's wallet: the key with which a customer decides (consents, loyalty points).
 * The wallet is the customer's: no organisation can replace it on its own.
 *
 * @dev Rules (the organisation that registered a customer id first is its *custodian*; see the
 * inheriting registry's {_requireCustodian}):
 *
 * - First link ({linkWallet}): only while no wallet is linked; signed by the new wallet
 *   (`LinkWallet`), submitted by a DATA_STEWARD of the custodian. An organisation that merely
 *   joined the customer later as a further holder can never link, rotate or recover.
 * - Rotation ({rotateWallet}): signed by the current wallet (`RotateWallet`, naming the new one)
 *   and by the new wallet (`LinkWallet`, proving possession); anyone may submit it.
 * - Recovery of a lost wallet ({startWalletRecovery}): a DATA_STEWARD of the custodian names a
 *   new wallet (which signs `LinkWallet`); it takes effect only {walletRecoveryDelay} seconds
 *   later ({completeWalletRecovery}, anyone may send it). Until then the current wallet can
 *   cancel it, by its own transaction ({cancelWalletRecovery}) or by a signature that anyone
 *   relays ({cancelWalletRecoveryBySig}); a rotation by the current wallet cancels it too.
 *
 * Every signature carries the customer's wallet nonce ({walletNonce}), which every change here
 * consumes (link, rotation, recovery start, cancellation, completion), and a deadline.
 * Signatures are ECDSA for an EOA, ERC-1271 for a contract wallet.
 */
abstract contract CustomerWallets is EIP712, ICustomerWallets {
    /// @notice A pending recovery: the wallet it links and when it may complete.
    struct WalletRecovery {
        /// The wallet the recovery links (zero: none pending).
        address wallet;
        /// Block timestamp from which {completeWalletRecovery} is accepted.
        uint64 readyAt;
    }

    /// @notice EIP-712 type hash of the new wallet's consent to be linked (first link, rotation, recovery).
    bytes32 public constant LINK_WALLET_TYPEHASH =
        keccak256("LinkWallet(bytes32 customerId,address wallet,uint256 nonce,uint256 deadline)");

    /// @notice EIP-712 type hash of the current wallet's authorisation to be replaced by `newWallet`.
    bytes32 public constant ROTATE_WALLET_TYPEHASH = keccak256(
        "RotateWallet(bytes32 customerId,address currentWallet,address newWallet,uint256 nonce,uint256 deadline)"
    );

    /// @notice EIP-712 type hash of the current wallet's cancellation of a pending recovery.
    bytes32 public constant CANCEL_WALLET_RECOVERY_TYPEHASH = keccak256(
        "CancelWalletRecovery(bytes32 customerId,address currentWallet,address recoveryWallet,uint256 nonce,uint256 deadline)"
    );

    /// @notice Seconds between the start of a recovery and the earliest moment it can complete.
    uint256 public immutable walletRecoveryDelay;

    mapping(bytes32 customerId => uint256) private _walletNonces;
    mapping(address wallet => bytes32 customerId) private _customerOfWallet;
    mapping(bytes32 customerId => WalletRecovery) private _recoveries;

    /// @notice The customer's wallet was linked, rotated or recovered.
    /// @param customerId The customer id.
    /// @param oldWallet The wallet linked before (the zero address if none).
    /// @param newWallet The wallet linked now.
    /// @param nonce The wallet nonce the change consumed (the next one is `nonce + 1`).
    event WalletLinked(bytes32 indexed customerId, address indexed oldWallet, address indexed newWallet, uint256 nonce);

    /// @notice The customer's wallet was unlinked (when the customer was erased).
    /// @param customerId The customer id.
    /// @param wallet The wallet that was linked.
    event WalletUnlinked(bytes32 indexed customerId, address indexed wallet);

    /// @notice A custodian steward started the recovery of the customer's wallet.
    /// @param customerId The customer id.
    /// @param orgId The custodian organisation.
    /// @param currentWallet The wallet linked now (which may cancel).
    /// @param newWallet The wallet the recovery links.
    /// @param readyAt Block timestamp from which the recovery can complete.
    /// @param nonce The wallet nonce the start consumed.
    event WalletRecoveryStarted(
        bytes32 indexed customerId,
        uint64 indexed orgId,
        address currentWallet,
        address newWallet,
        uint64 readyAt,
        uint256 nonce
    );

    /// @notice A pending recovery was cancelled.
    /// @param customerId The customer id.
    /// @param recoveryWallet The wallet the recovery would have linked.
    /// @param by The account that cancelled (the current wallet, a relayer, or a custodian steward).
    /// @param nonce The wallet nonce the cancellation consumed.
    event WalletRecoveryCancelled(bytes32 indexed customerId, address recoveryWallet, address by, uint256 nonce);

    /// @notice A recovery completed after its delay (followed by {WalletLinked}).
    /// @param customerId The customer id.
    /// @param oldWallet The lost wallet.
    /// @param newWallet The wallet linked now.
    event WalletRecoveryCompleted(bytes32 indexed customerId, address oldWallet, address newWallet);

    /// @notice The recovery delay must not be zero.
    error InvalidRecoveryDelay();

    /// @notice The zero address cannot be linked as a wallet.
    error InvalidWallet();

    /// @notice The signature's deadline has passed.
    /// @param deadline The deadline (a block timestamp).
    error ExpiredSignature(uint256 deadline);

    /// @notice The signature is not a valid authorisation by `wallet` for the current nonce.
    /// @param customerId The customer id.
    /// @param wallet The wallet that should have signed.
    error InvalidWalletSignature(bytes32 customerId, address wallet);

    /// @notice The wallet is linked to another customer.
    /// @param wallet The wallet.
    /// @param customerId The customer it is linked to.
    error WalletInUse(address wallet, bytes32 customerId);

    /// @notice The customer already has a wallet: only that wallet can replace it ({rotateWallet}),
    /// or a recovery with a delay ({startWalletRecovery}).
    /// @param customerId The customer id.
    /// @param wallet The linked wallet.
    error WalletAlreadyLinked(bytes32 customerId, address wallet);

    /// @notice The customer has no wallet yet (use {linkWallet}).
    /// @param customerId The customer id.
    error NoWalletLinked(bytes32 customerId);

    /// @notice The organisation holds the customer but is not its custodian (it joined later, or
    /// the custodian erased its holding): it has no power over the wallet.
    /// @param customerId The customer id.
    /// @param orgId The organisation.
    error NotWalletCustodian(bytes32 customerId, uint64 orgId);

    /// @notice A recovery is already pending.
    /// @param customerId The customer id.
    /// @param wallet The wallet it would link.
    /// @param readyAt When it can complete.
    error RecoveryPending(bytes32 customerId, address wallet, uint64 readyAt);

    /// @notice No recovery is pending.
    /// @param customerId The customer id.
    error NoRecoveryPending(bytes32 customerId);

    /// @notice The recovery's delay has not passed yet.
    /// @param customerId The customer id.
    /// @param readyAt When it can complete.
    error RecoveryNotReady(bytes32 customerId, uint64 readyAt);

    /// @notice Only the current wallet (or a custodian steward) may cancel the recovery this way.
    /// @param customerId The customer id.
    /// @param account The caller.
    error NotAllowedToCancel(bytes32 customerId, address account);

    /**
     * @param recoveryDelay_ Seconds a recovery waits before it can complete (non-zero).
     */
    constructor(uint256 recoveryDelay_) {
        if (recoveryDelay_ == 0) revert InvalidRecoveryDelay();
        walletRecoveryDelay = recoveryDelay_;
    }

    // ------------------------------------------------------------------------------------------
    // Writes
    // ------------------------------------------------------------------------------------------

    /**
     * @notice First link of `wallet` to `customerId`, which has no wallet yet. `wallet` signs
     * `LinkWallet(customerId, wallet, nonce, deadline)` at the current {walletNonce}; the caller
     * must be a DATA_STEWARD of the customer's custodian.
     * @dev Emits {WalletLinked}. Reverts with {InvalidWallet}, {UnknownCustomer}/{CustomerIsErased},
     * {NotHolder}/{NotWalletCustodian} (or the role error), {WalletAlreadyLinked},
     * {ExpiredSignature}, {WalletInUse} or {InvalidWalletSignature}.
     * @param customerId The customer id.
     * @param wallet The wallet to link.
     * @param deadline The last block timestamp at which the signature is accepted.
     * @param signature The wallet's signature (65 bytes `r,s,v` for an EOA).
     */
    function linkWallet(bytes32 customerId, address wallet, uint256 deadline, bytes calldata signature)
        external
        virtual
    {
        if (wallet == address(0)) revert InvalidWallet();
        _requireCustodian(customerId);
        address current = _walletOf(customerId);
        if (current != address(0)) revert WalletAlreadyLinked(customerId, current);
        uint256 nonce = _walletNonces[customerId];
        _requireLinkSignature(customerId, wallet, nonce, deadline, signature);
        _linkWallet(customerId, wallet, nonce);
    }

    /**
     * @notice Replace the customer's wallet by `newWallet`, authorised by the current wallet
     * (`RotateWallet(customerId, currentWallet, newWallet, nonce, deadline)`) and accepted by the
     * new one (`LinkWallet(customerId, newWallet, nonce, deadline)`), both at the current
     * {walletNonce}. Anyone may submit it. A pending recovery is cancelled.
     * @dev Emits {WalletRecoveryCancelled} (if one was pending) and {WalletLinked}. Reverts with
     * {InvalidWallet}, {UnknownCustomer}/{CustomerIsErased}, {NoWalletLinked},
     * {ExpiredSignature}, {WalletInUse} or {InvalidWalletSignature} (naming the wallet whose
     * signature failed).
     * @param customerId The customer id.
     * @param newWallet The wallet to link.
     * @param deadline The last block timestamp at which the signatures are accepted.
     * @param currentSignature The current wallet's signature of `RotateWallet`.
     * @param newSignature The new wallet's signature of `LinkWallet`.
     */
    function rotateWallet(
        bytes32 customerId,
        address newWallet,
        uint256 deadline,
        bytes calldata currentSignature,
        bytes calldata newSignature
    ) external virtual {
        if (newWallet == address(0)) revert InvalidWallet();
        _requireActiveCustomer(customerId);
        address current = _walletOf(customerId);
        if (current == address(0)) revert NoWalletLinked(customerId);
        uint256 nonce = _walletNonces[customerId];
        if (block.timestamp > deadline) revert ExpiredSignature(deadline);
        bytes32 structHash =
            keccak256(abi.encode(ROTATE_WALLET_TYPEHASH, customerId, current, newWallet, nonce, deadline));
        if (!_isValidWalletSignature(current, _hashTypedDataV4(structHash), currentSignature)) {
            revert InvalidWalletSignature(customerId, current);
        }
        _requireLinkSignature(customerId, newWallet, nonce, deadline, newSignature);
        if (_recoveries[customerId].wallet != address(0)) _cancelRecovery(customerId, nonce);
        _linkWallet(customerId, newWallet, nonce);
    }

    /**
     * @notice Start the recovery of a lost wallet: link `newWallet` (which signs `LinkWallet` at
     * the current {walletNonce}) after {walletRecoveryDelay}, unless the current wallet cancels
     * first. The caller must be a DATA_STEWARD of the customer's custodian.
     * @dev Emits {WalletRecoveryStarted}. Reverts with {InvalidWallet}, {UnknownCustomer}/
     * {CustomerIsErased}, {NotHolder}/{NotWalletCustodian} (or the role error), {NoWalletLinked},
     * {RecoveryPending}, {ExpiredSignature}, {WalletInUse} or {InvalidWalletSignature}.
     * @param customerId The customer id.
     * @param newWallet The wallet to link.
     * @param deadline The last block timestamp at which the new wallet's signature is accepted.
     * @param signature The new wallet's signature of `LinkWallet`.
     */
    function startWalletRecovery(bytes32 customerId, address newWallet, uint256 deadline, bytes calldata signature)
        external
        virtual
    {
        if (newWallet == address(0)) revert InvalidWallet();
        uint64 orgId = _requireCustodian(customerId);
        address current = _walletOf(customerId);
        if (current == address(0)) revert NoWalletLinked(customerId);
        WalletRecovery storage pending = _recoveries[customerId];
        if (pending.wallet != address(0)) revert RecoveryPending(customerId, pending.wallet, pending.readyAt);
        uint256 nonce = _walletNonces[customerId];
        _requireLinkSignature(customerId, newWallet, nonce, deadline, signature);
        uint64 readyAt = uint64(block.timestamp + walletRecoveryDelay);
        _recoveries[customerId] = WalletRecovery({wallet: newWallet, readyAt: readyAt});
        _walletNonces[customerId] = nonce + 1;
        emit WalletRecoveryStarted(customerId, orgId, current, newWallet, readyAt, nonce);
    }

    /**
     * @notice Cancel the pending recovery of `customerId`. The caller must be the customer's
     * current wallet, or a DATA_STEWARD of the custodian (withdrawing its own request).
     * @dev Emits {WalletRecoveryCancelled}. Reverts with {NoRecoveryPending} or {NotAllowedToCancel}.
     * @param customerId The customer id.
     */
    function cancelWalletRecovery(bytes32 customerId) external virtual {
        if (_recoveries[customerId].wallet == address(0)) revert NoRecoveryPending(customerId);
        if (msg.sender != _walletOf(customerId) && !_isCustodianSteward(customerId, msg.sender)) {
            revert NotAllowedToCancel(customerId, msg.sender);
        }
        uint256 nonce = _walletNonces[customerId];
        _walletNonces[customerId] = nonce + 1;
        _cancelRecovery(customerId, nonce);
    }

    /**
     * @notice Cancel the pending recovery of `customerId` with the current wallet's signature of
     * `CancelWalletRecovery(customerId, currentWallet, recoveryWallet, nonce, deadline)` at the
     * current {walletNonce}. Anyone may submit it.
     * @dev Emits {WalletRecoveryCancelled}. Reverts with {NoRecoveryPending}, {ExpiredSignature}
     * or {InvalidWalletSignature}.
     * @param customerId The customer id.
     * @param deadline The last block timestamp at which the signature is accepted.
     * @param signature The current wallet's signature.
     */
    function cancelWalletRecoveryBySig(bytes32 customerId, uint256 deadline, bytes calldata signature)
        external
        virtual
    {
        address recoveryWallet = _recoveries[customerId].wallet;
        if (recoveryWallet == address(0)) revert NoRecoveryPending(customerId);
        if (block.timestamp > deadline) revert ExpiredSignature(deadline);
        address current = _walletOf(customerId);
        uint256 nonce = _walletNonces[customerId];
        bytes32 structHash = keccak256(
            abi.encode(CANCEL_WALLET_RECOVERY_TYPEHASH, customerId, current, recoveryWallet, nonce, deadline)
        );
        if (!_isValidWalletSignature(current, _hashTypedDataV4(structHash), signature)) {
            revert InvalidWalletSignature(customerId, current);
        }
        _walletNonces[customerId] = nonce + 1;
        _cancelRecovery(customerId, nonce);
    }

    /**
     * @notice Complete the pending recovery of `customerId` once its delay has passed: its wallet
     * replaces the current one. Anyone may send it.
     * @dev Emits {WalletRecoveryCompleted} and {WalletLinked}. Reverts with {NoRecoveryPending},
     * {RecoveryNotReady} or {WalletInUse} (the new wallet was linked elsewhere meanwhile).
     * @param customerId The customer id.
     */
    function completeWalletRecovery(bytes32 customerId) external virtual {
        WalletRecovery memory pending = _recoveries[customerId];
        if (pending.wallet == address(0)) revert NoRecoveryPending(customerId);
        if (block.timestamp < pending.readyAt) revert RecoveryNotReady(customerId, pending.readyAt);
        bytes32 linked = _customerOfWallet[pending.wallet];
        if (linked != bytes32(0) && linked != customerId) revert WalletInUse(pending.wallet, linked);
        delete _recoveries[customerId];
        address old = _walletOf(customerId);
        uint256 nonce = _walletNonces[customerId];
        _linkWallet(customerId, pending.wallet, nonce);
        emit WalletRecoveryCompleted(customerId, old, pending.wallet);
    }

    // ------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------

    /**
     * @notice The nonce the next wallet signature for `customerId` must carry.
     * @param customerId The customer id.
     * @return The nonce.
     */
    function walletNonce(bytes32 customerId) public view virtual returns (uint256) {
        return _walletNonces[customerId];
    }

    /**
     * @notice The pending recovery of `customerId` (all zero if none).
     * @param customerId The customer id.
     * @return The recovery.
     */
    function walletRecovery(bytes32 customerId) public view virtual returns (WalletRecovery memory) {
        return _recoveries[customerId];
    }

    /**
     * @notice The customer a wallet is linked to.
     * @param wallet The wallet.
     * @return The customer id, or zero if the wallet is not linked.
     */
    function customerOfWallet(address wallet) public view virtual returns (bytes32) {
        return _customerOfWallet[wallet];
    }

    /**
     * @notice Whether `wallet` is linked to an active customer (see {ICustomerWallets}).
     * @dev One storage read: a wallet is linked only to an active customer, is unlinked when it
     * is replaced ({_linkWallet}) and when its customer is erased ({_unlinkWallet}).
     * @param wallet The wallet.
     * @return True if `wallet` is the wallet of an active customer.
     */
    function isActiveWallet(address wallet) public view virtual returns (bool) {
        return _customerOfWallet[wallet] != bytes32(0);
    }

    // ------------------------------------------------------------------------------------------
    // Hooks for the registry
    // ------------------------------------------------------------------------------------------

    /// @dev The wallet linked to `customerId` (zero if none).
    function _walletOf(bytes32 customerId) internal view virtual returns (address);

    /// @dev Store `wallet` as the customer's wallet. No checks.
    function _setWallet(bytes32 customerId, address wallet) internal virtual;

    /// @dev Revert unless `customerId` is registered and not erased.
    function _requireActiveCustomer(bytes32 customerId) internal view virtual;

    /**
     * @dev Revert unless the caller is a DATA_STEWARD of the custodian of `customerId` (an active
     * customer); return the custodian organisation.
     */
    function _requireCustodian(bytes32 customerId) internal view virtual returns (uint64 orgId);

    /// @dev Whether `account` is a DATA_STEWARD in force of the custodian of `customerId`.
    function _isCustodianSteward(bytes32 customerId, address account) internal view virtual returns (bool);

    // ------------------------------------------------------------------------------------------
    // Internal
    // ------------------------------------------------------------------------------------------

    /**
     * @dev Revert unless `signature` is `wallet`'s `LinkWallet` for `customerId` at `nonce`, before
     * `deadline`, and `wallet` is not another customer's.
     */
    function _requireLinkSignature(
        bytes32 customerId,
        address wallet,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) internal view virtual {
        if (block.timestamp > deadline) revert ExpiredSignature(deadline);
        bytes32 linked = _customerOfWallet[wallet];
        if (linked != bytes32(0) && linked != customerId) revert WalletInUse(wallet, linked);
        bytes32 structHash = keccak256(abi.encode(LINK_WALLET_TYPEHASH, customerId, wallet, nonce, deadline));
        if (!_isValidWalletSignature(wallet, _hashTypedDataV4(structHash), signature)) {
            revert InvalidWalletSignature(customerId, wallet);
        }
    }

    /**
     * @dev Link `wallet` to `customerId` (unlinking the previous one) and consume `nonce`, the
     * current nonce. No checks. Emits {WalletLinked}.
     */
    function _linkWallet(bytes32 customerId, address wallet, uint256 nonce) internal virtual {
        address old = _walletOf(customerId);
        if (old != address(0)) delete _customerOfWallet[old];
        _customerOfWallet[wallet] = customerId;
        _setWallet(customerId, wallet);
        _walletNonces[customerId] = nonce + 1;
        emit WalletLinked(customerId, old, wallet, nonce);
    }

    /// @dev Forget the pending recovery of `customerId`. No checks. Emits {WalletRecoveryCancelled}.
    function _cancelRecovery(bytes32 customerId, uint256 nonce) internal virtual {
        address recoveryWallet = _recoveries[customerId].wallet;
        delete _recoveries[customerId];
        emit WalletRecoveryCancelled(customerId, recoveryWallet, msg.sender, nonce);
    }

    /**
     * @dev Unlink the wallet of `customerId` (being erased) and drop a pending recovery. Emits
     * {WalletUnlinked} if a wallet was linked.
     */
    function _unlinkWallet(bytes32 customerId) internal virtual {
        delete _recoveries[customerId];
        address wallet = _walletOf(customerId);
        if (wallet != address(0)) {
            _setWallet(customerId, address(0));
            delete _customerOfWallet[wallet];
            emit WalletUnlinked(customerId, wallet);
        }
    }

    /**
     * @dev Whether `signature` is `wallet`'s approval of `digest`: recovered with ECDSA
     * (malleable and invalid signatures refused) when `wallet` has no code, approved through
     * ERC-1271 `isValidSignature` when it is a contract.
     *
     * NOTE: The same rule as OpenZeppelin's `SignatureChecker.isValidSignatureNow`, which is not
     * used because in v5.4 it pulls in `Bytes` (MCOPY), which would make every contract of the
     * project Cancun-only.
     */
    function _isValidWalletSignature(address wallet, bytes32 digest, bytes calldata signature)
        internal
        view
        virtual
        returns (bool)
    {
        if (wallet.code.length == 0) {
            (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
            return err == ECDSA.RecoverError.NoError && recovered == wallet;
        }
        (bool success, bytes memory result) =
            wallet.staticcall(abi.encodeCall(IERC1271.isValidSignature, (digest, signature)));
        return success && result.length >= 32
            && abi.decode(result, (bytes32)) == bytes32(IERC1271.isValidSignature.selector);
    }
}
