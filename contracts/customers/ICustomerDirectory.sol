// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title ICustomerDirectory
 * @notice The part of the CustomerRegistry that other contracts ask about a customer id: its
 * lifecycle status and the wallet registered for it.
 */
interface ICustomerDirectory {
    /**
     * @notice The state of a customer id (all zero for an unknown id).
     * @param customerId The customer id.
     * @return status Its lifecycle status: 0 never registered, 1 active, 2 erased.
     * @return registeredAt Block timestamp of its first registration.
     * @return wallet The linked wallet, or the zero address.
     * @return holderCount How many organisations hold it.
     */
    function customer(bytes32 customerId)
        external
        view
        returns (uint8 status, uint64 registeredAt, address wallet, uint256 holderCount);
}
