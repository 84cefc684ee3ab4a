// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IOrganizationDirectory
 * @notice The part of the Consortium that tells which organisations exist and whether they are
 * active (see OrganizationRoles), for contracts that take an organisation id as input.
 */
interface IOrganizationDirectory {
    /// @notice An organisation of the consortium (the ABI of OrganizationRoles.Organization).
    struct Organization {
        /// Sequential id, starting at 1.
        uint64 id;
        /// Unique display name.
        string name;
        /// The admin the organisation was created with.
        address admin;
        /// False while the organisation is suspended.
        bool active;
    }

    /**
     * @notice How many organisations were ever created (ids run from 1 to this number).
     * @return The count.
     */
    function organizationCount() external view returns (uint64);

    /**
     * @notice The organisation with id `orgId`; reverts if there is none.
     * @param orgId The organisation id.
     * @return The organisation record.
     */
    function organization(uint64 orgId) external view returns (Organization memory);
}
