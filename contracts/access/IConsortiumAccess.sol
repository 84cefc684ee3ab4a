// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IConsortiumAccess
 * @notice The part of the Consortium that other contracts of the consortium ask before letting an
 * account act: whether a role is held and in force, and which organisation the account acts for.
 */
interface IConsortiumAccess {
    /**
     * @notice Whether `account` holds `role` and the role is in force (its organisation, if any,
     * is active).
     * @param role The role id (keccak256 of its name).
     * @param account The account.
     * @return True if the role is held and in force.
     */
    function hasActiveRole(bytes32 role, address account) external view returns (bool);

    /**
     * @notice The organisation `account` belongs to.
     * @param account The account.
     * @return The organisation id (0 = none).
     */
    function organizationOf(address account) external view returns (uint64);
}
