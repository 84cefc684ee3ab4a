// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title ICustomerWallets
 * @notice The part of the CustomerRegistry that contracts ask on every token movement: whether a
 * wallet is the one registered for an active customer. One call, one storage read.
 */
interface ICustomerWallets {
    /**
     * @notice Whether `wallet` is linked to a customer id that is active (registered and not erased).
     * @param wallet The wallet.
     * @return True if it is; false for the zero address, an unlinked or rotated-away wallet, and the
     * wallet of an erased customer.
     */
    function isActiveWallet(address wallet) external view returns (bool);
}
