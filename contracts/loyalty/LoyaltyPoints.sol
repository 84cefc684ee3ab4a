// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {IConsortiumAccess} from "../access/IConsortiumAccess.sol";
import {ICustomerWallets} from "../customers/ICustomerWallets.sol";

/**
 * @title LoyaltyPoints
 * @notice One points currency for every merchant of a consortium: a standard ERC-20 (with EIP-2612
 * permits) that customers hold in the wallet registered for them in the CustomerRegistry, that
 * every member merchant issues and accepts, and whose per-merchant issuance and redemption make
 * coalition settlement a view.
 *
 * @dev Rules:
 *
 * - Accounts holding MERCHANT in force in the Consortium ({IConsortiumAccess.hasActiveRole}) act
 *   for their organisation ({IConsortiumAccess.organizationOf}):
 *   {earn} mints to the wallet of an active customer; {reward} mints for a customer action (a
 *   feedback survey, a review, ...) identified by its hash, at most once per action hash;
 *   {redeem} burns from a customer within the allowance the customer gave the merchant account,
 *   by `approve` in their own transaction or by an EIP-2612 {permit} signature, which
 *   {redeemWithPermit} submits in the same transaction.
 * - Points issued ({earn}, {reward}) and redeemed are totalled per merchant organisation
 *   ({issued}, {redeemed}), so what one organisation owes another is read, not recomputed.
 * - Transfers between holders follow the {TransferPolicy} fixed at deployment, enforced in
 *   {_update}; mints and burns are governed by {earn}, {reward} and {redeem} instead.
 * - CONSORTIUM_ADMIN pauses and unpauses: while paused every balance change (transfer, earn,
 *   reward, redeem) reverts with {Pausable.EnforcedPause}; approvals and permits still work.
 * - ERC-20 failures are OpenZeppelin's ERC-6093 errors, unchanged.
 *
 * Gas: on top of OpenZeppelin's ERC20, a transfer reads the pause flag and, under RegisteredOnly,
 * makes one call to the registry that reads one storage word ({ICustomerWallets.isActiveWallet});
 * earn, reward and redeem add two calls to the Consortium (role in force, organisation), the
 * registry call for earn and reward, and one word for the organisation's total.
 */
contract LoyaltyPoints is ERC20, ERC20Permit, Pausable {
    /// @notice Who may hold and move points, fixed at deployment.
    enum TransferPolicy {
        /// Points move only to the wallet of an active customer (the default).
        RegisteredOnly,
        /// Points move between any addresses, like any ERC-20.
        Free,
        /// Points never move between holders: they are only earned, rewarded and redeemed.
        NonTransferable
    }

    /// @notice Role that issues and redeems points (as named in the Consortium).
    bytes32 public constant MERCHANT = keccak256("MERCHANT");

    /// @notice Role that pauses and unpauses the token (as named in the Consortium).
    bytes32 public constant CONSORTIUM_ADMIN = keccak256("CONSORTIUM_ADMIN");

    /// @notice The Consortium whose MERCHANTs issue and redeem and whose CONSORTIUM_ADMINs pause.
    IConsortiumAccess public immutable consortium;

    /// @notice The CustomerRegistry that says which wallets belong to active customers.
    ICustomerWallets public immutable customerRegistry;

    /// @notice The transfer policy, fixed at deployment.
    TransferPolicy public immutable transferPolicy;

    uint8 private immutable _decimals;

    mapping(uint64 orgId => uint256) private _issued;
    mapping(uint64 orgId => uint256) private _redeemed;
    mapping(bytes32 actionHash => uint64 orgId) private _rewardedBy;

    /// @notice A merchant issued points to a customer's wallet (next to the ERC-20 {Transfer} from 0).
    /// @param orgId The merchant's organisation, whose {issued} total grew by `amount`.
    /// @param to The customer's wallet.
    /// @param merchant The merchant account that called {earn}.
    /// @param amount The points issued.
    /// @param reason The merchant's reason code (a purchase, a receipt id, a campaign, ...).
    event PointsEarned(uint64 indexed orgId, address indexed to, address merchant, uint256 amount, bytes32 reason);

    /// @notice A merchant redeemed points from a customer's wallet (next to the ERC-20 {Transfer} to 0).
    /// @param orgId The merchant's organisation, whose {redeemed} total grew by `amount`.
    /// @param from The customer's wallet.
    /// @param merchant The merchant account that called {redeem} or {redeemWithPermit}.
    /// @param amount The points redeemed (burnt).
    /// @param reason The merchant's reason code (an order, a reward item, ...).
    event PointsRedeemed(
        uint64 indexed orgId, address indexed from, address merchant, uint256 amount, bytes32 reason
    );

    /// @notice A merchant rewarded a customer action (next to the ERC-20 {Transfer} from 0).
    /// @param orgId The merchant's organisation, whose {issued} total grew by `amount`.
    /// @param to The customer's wallet.
    /// @param actionHash The hash of the action (e.g. of a survey response); rewarded only once.
    /// @param merchant The merchant account that called {reward}.
    /// @param amount The points issued.
    event ActionRewarded(
        uint64 indexed orgId, address indexed to, bytes32 indexed actionHash, address merchant, uint256 amount
    );

    /// @notice The consortium address has no code.
    /// @param consortium The address given.
    error InvalidConsortium(address consortium);

    /// @notice The registry address has no code or does not answer {ICustomerWallets.isActiveWallet}.
    /// @param customerRegistry The address given.
    error InvalidCustomerRegistry(address customerRegistry);

    /// @notice The wallet is not linked to an active customer in the CustomerRegistry.
    /// @param wallet The wallet.
    error WalletNotRegistered(address wallet);

    /// @notice The transfer policy refuses this transfer.
    /// @param policy The token's transfer policy.
    /// @param from The sender.
    /// @param to The receiver.
    error TransferNotAllowed(TransferPolicy policy, address from, address to);

    /// @notice Earning, rewarding or redeeming zero points is refused.
    error ZeroAmount();

    /// @notice The zero action hash is not valid.
    error InvalidActionHash();

    /// @notice The action was rewarded already.
    /// @param actionHash The action hash.
    /// @param orgId The organisation that rewarded it.
    error ActionAlreadyRewarded(bytes32 actionHash, uint64 orgId);

    /**
     * @notice Deploy the points currency of a consortium.
     * @dev The EIP-712 domain of permits is (`name_`, "1", chain id, this contract).
     * @param name_ The token name (also the EIP-712 domain name).
     * @param symbol_ The token symbol.
     * @param decimals_ The display decimals (0 for whole points).
     * @param consortium_ The Consortium (anything implementing {IConsortiumAccess}).
     * @param customerRegistry_ The CustomerRegistry (anything implementing {ICustomerWallets}).
     * @param policy The transfer policy, for good.
     */
    constructor(
        string memory name_,
        string memory symbol_,
        uint8 decimals_,
        IConsortiumAccess consortium_,
        ICustomerWallets customerRegistry_,
        TransferPolicy policy
    ) ERC20(name_, symbol_) ERC20Permit(name_) {
        if (address(consortium_).code.length == 0) revert InvalidConsortium(address(consortium_));
        // A registry deployed before {ICustomerWallets} existed would make every earn revert.
        if (address(customerRegistry_).code.length == 0) revert InvalidCustomerRegistry(address(customerRegistry_));
        try customerRegistry_.isActiveWallet(address(0)) returns (bool) {}
        catch {
            revert InvalidCustomerRegistry(address(customerRegistry_));
        }
        consortium = consortium_;
        customerRegistry = customerRegistry_;
        transferPolicy = policy;
        _decimals = decimals_;
    }

    // ------------------------------------------------------------------------------------------
    // Merchants
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Issue `amount` points to `to`, the wallet of an active customer, for the caller's
     * organisation.
     * @dev Emits {Transfer} (from 0) and {PointsEarned}. Reverts with
     * {IAccessControl.AccessControlUnauthorizedAccount} unless the caller holds MERCHANT in force,
     * {ZeroAmount}, {ERC20InvalidReceiver} for the zero address, {WalletNotRegistered}, or
     * {Pausable.EnforcedPause}.
     * @param to The customer's wallet.
     * @param amount The points to issue (non-zero).
     * @param reason The merchant's reason code, recorded in {PointsEarned}.
     */
    function earn(address to, uint256 amount, bytes32 reason) external virtual {
        uint64 orgId = _requireMerchant();
        _requireIssuable(to, amount);
        _issue(orgId, to, amount);
        emit PointsEarned(orgId, to, _msgSender(), amount, reason);
    }

    /**
     * @notice Issue `amount` points to `to`, the wallet of an active customer, for a customer
     * action identified by `actionHash` (e.g. the hash of a completed survey), for the caller's
     * organisation. Each action hash is rewarded at most once, by any organisation.
     * @dev Emits {Transfer} (from 0) and {ActionRewarded}. Reverts as {earn}, and with
     * {InvalidActionHash} or {ActionAlreadyRewarded}.
     * @param to The customer's wallet.
     * @param amount The points to issue (non-zero).
     * @param actionHash The action's hash (non-zero, never rewarded before).
     */
    function reward(address to, uint256 amount, bytes32 actionHash) external virtual {
        uint64 orgId = _requireMerchant();
        if (actionHash == bytes32(0)) revert InvalidActionHash();
        uint64 rewardedBy = _rewardedBy[actionHash];
        if (rewardedBy != 0) revert ActionAlreadyRewarded(actionHash, rewardedBy);
        _requireIssuable(to, amount);
        _rewardedBy[actionHash] = orgId;
        _issue(orgId, to, amount);
        emit ActionRewarded(orgId, to, actionHash, _msgSender(), amount);
    }

    /**
     * @notice Redeem `amount` points of `from` at the caller's organisation: burn them within the
     * allowance `from` gave the caller (by `approve` or {permit}).
     * @dev Emits {Transfer} (to 0) and {PointsRedeemed}; an allowance that is not unlimited
     * decreases (without an {Approval} event, as in {transferFrom}). Reverts with
     * {IAccessControl.AccessControlUnauthorizedAccount}, {ZeroAmount},
     * {ERC20InsufficientAllowance}, {ERC20InsufficientBalance} or {Pausable.EnforcedPause}.
     * @param from The customer's wallet.
     * @param amount The points to redeem (non-zero).
     * @param reason The merchant's reason code, recorded in {PointsRedeemed}.
     */
    function redeem(address from, uint256 amount, bytes32 reason) external virtual {
        uint64 orgId = _requireMerchant();
        _redeem(orgId, from, amount, reason);
    }

    /**
     * @notice {redeem} authorised by the customer's EIP-2612 permit, in one transaction: the
     * customer signed `Permit(owner=from, spender=caller, value=amount, nonce, deadline)` in this
     * token's EIP-712 domain.
     * @dev The permit is consumed and sets the allowance to `amount` (replacing any earlier
     * allowance of the caller), which the redemption spends. If the permit fails but the allowance
     * already covers `amount` (someone submitted the same permit first), the redemption goes on;
     * otherwise the permit's error is raised ({ERC2612ExpiredSignature}, {ERC2612InvalidSigner},
     * {ECDSA.ECDSAInvalidSignature}, ...).
     * @param from The customer's wallet (the permit's owner).
     * @param amount The points to redeem (the permit's value).
     * @param reason The merchant's reason code.
     * @param deadline The permit's deadline.
     * @param v The signature's `v`.
     * @param r The signature's `r`.
     * @param s The signature's `s`.
     */
    function redeemWithPermit(
        address from,
        uint256 amount,
        bytes32 reason,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external virtual {
        uint64 orgId = _requireMerchant();
        _usePermit(from, _msgSender(), amount, deadline, v, r, s);
        _redeem(orgId, from, amount, reason);
    }

    // ------------------------------------------------------------------------------------------
    // Consortium admin
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Stop every balance change until {unpause}. Caller: CONSORTIUM_ADMIN in force.
     * @dev Emits {Pausable.Paused}; reverts with {Pausable.EnforcedPause} if already paused.
     */
    function pause() external virtual {
        _requireConsortiumAdmin();
        _pause();
    }

    /**
     * @notice Allow balance changes again. Caller: CONSORTIUM_ADMIN in force.
     * @dev Emits {Pausable.Unpaused}; reverts with {Pausable.ExpectedPause} if not paused.
     */
    function unpause() external virtual {
        _requireConsortiumAdmin();
        _unpause();
    }

    // ------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------

    /**
     * @notice Decimals for display, fixed at deployment (0: a point is indivisible).
     * @return The number of decimals.
     */
    function decimals() public view virtual override returns (uint8) {
        return _decimals;
    }

    /**
     * @notice Points ever issued by merchant organisation `orgId` ({earn} and {reward}).
     * @param orgId The organisation id (as in the Consortium).
     * @return The total issued.
     */
    function issued(uint64 orgId) public view virtual returns (uint256) {
        return _issued[orgId];
    }

    /**
     * @notice Points ever redeemed at merchant organisation `orgId`.
     * @param orgId The organisation id (as in the Consortium).
     * @return The total redeemed.
     */
    function redeemed(uint64 orgId) public view virtual returns (uint256) {
        return _redeemed[orgId];
    }

    /**
     * @notice The organisation that rewarded `actionHash`.
     * @param actionHash The action hash.
     * @return The organisation id, or 0 if the action was never rewarded.
     */
    function rewardedBy(bytes32 actionHash) public view virtual returns (uint64) {
        return _rewardedBy[actionHash];
    }

    // ------------------------------------------------------------------------------------------
    // Internal extension points
    // ------------------------------------------------------------------------------------------

    /**
     * @dev Revert with {IAccessControl.AccessControlUnauthorizedAccount} unless the caller holds
     * MERCHANT in force in the Consortium; returns the caller's organisation.
     */
    function _requireMerchant() internal view virtual returns (uint64 orgId) {
        address caller = _msgSender();
        if (consortium.hasActiveRole(MERCHANT, caller)) orgId = consortium.organizationOf(caller);
        if (orgId == 0) revert IAccessControl.AccessControlUnauthorizedAccount(caller, MERCHANT);
    }

    /**
     * @dev Revert with {IAccessControl.AccessControlUnauthorizedAccount} unless the caller holds
     * CONSORTIUM_ADMIN in force in the Consortium.
     */
    function _requireConsortiumAdmin() internal view virtual {
        address caller = _msgSender();
        if (!consortium.hasActiveRole(CONSORTIUM_ADMIN, caller)) {
            revert IAccessControl.AccessControlUnauthorizedAccount(caller, CONSORTIUM_ADMIN);
        }
    }

    /**
     * @dev Whether `wallet` is linked to an active customer: one `staticcall` to the registry's
     * {ICustomerWallets.isActiveWallet}, encoded in scratch space (about 200 gas less than the
     * high-level call on every transfer). Fails closed: a failed call or an answer other than an
     * ABI `true` counts as not active.
     */
    function _isActiveWallet(address wallet) internal view virtual returns (bool active) {
        address registry = address(customerRegistry);
        bytes4 selector = ICustomerWallets.isActiveWallet.selector;
        assembly ("memory-safe") {
            mstore(0x00, selector)
            mstore(0x04, wallet)
            let ok := staticcall(gas(), registry, 0x00, 0x24, 0x00, 0x20)
            active := and(ok, and(gt(returndatasize(), 0x1f), eq(mload(0x00), 1)))
        }
    }

    /**
     * @dev Revert unless `amount` points may be issued to `to`: {ZeroAmount},
     * {ERC20InvalidReceiver} for the zero address, {WalletNotRegistered} unless it is the wallet
     * of an active customer (whatever the transfer policy).
     */
    function _requireIssuable(address to, uint256 amount) internal view virtual {
        if (amount == 0) revert ZeroAmount();
        if (to == address(0)) revert ERC20InvalidReceiver(address(0));
        if (!_isActiveWallet(to)) revert WalletNotRegistered(to);
    }

    /// @dev Mint `amount` to `to` and add it to `orgId`'s issued total. No checks but ERC20's.
    function _issue(uint64 orgId, address to, uint256 amount) internal virtual {
        _mint(to, amount);
        _issued[orgId] += amount;
    }

    /**
     * @dev Burn `amount` of `from` within the caller's allowance and add it to `orgId`'s redeemed
     * total. Emits {PointsRedeemed}.
     */
    function _redeem(uint64 orgId, address from, uint256 amount, bytes32 reason) internal virtual {
        if (amount == 0) revert ZeroAmount();
        address merchant = _msgSender();
        _spendAllowance(from, merchant, amount);
        _burn(from, amount);
        _redeemed[orgId] += amount;
        emit PointsRedeemed(orgId, from, merchant, amount, reason);
    }

    /**
     * @dev Apply `owner`'s permit for `spender`; if it fails, go on only if the allowance already
     * covers `value` (the same permit was front-run), else re-raise the permit's error.
     */
    function _usePermit(
        address owner,
        address spender,
        uint256 value,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) internal virtual {
        try this.permit(owner, spender, value, deadline, v, r, s) {}
        catch (bytes memory permitError) {
            if (allowance(owner, spender) < value) {
                assembly ("memory-safe") {
                    revert(add(permitError, 0x20), mload(permitError))
                }
            }
        }
    }

    /**
     * @dev Enforce the transfer policy on transfers between holders, for every call path
     * ({transfer}, {transferFrom}, and any derived one). Mints and burns are not transfers here.
     * RegisteredOnly checks the receiver only: every balance arrived through such a check (or
     * {earn}/{reward}), and a customer whose wallet was rotated or erased can still move what the
     * old wallet holds to a registered wallet (and be redeemed from it), but nowhere else.
     * Reverts with {TransferNotAllowed}.
     */
    function _checkTransfer(address from, address to) internal view virtual {
        TransferPolicy policy = transferPolicy;
        if (policy == TransferPolicy.Free) return;
        if (policy == TransferPolicy.NonTransferable || !_isActiveWallet(to)) {
            revert TransferNotAllowed(policy, from, to);
        }
    }

    /**
     * @dev Every balance change: refused while paused ({Pausable.EnforcedPause}), transfers
     * between holders checked against the policy ({_checkTransfer}), then ERC20's bookkeeping.
     */
    function _update(address from, address to, uint256 value) internal virtual override {
        _requireNotPaused();
        if (from != address(0) && to != address(0)) _checkTransfer(from, to);
        super._update(from, to, value);
    }
}
