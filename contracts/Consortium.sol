// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControlEnumerable} from "@openzeppelin/contracts/access/extensions/AccessControlEnumerable.sol";
import {ConsortiumApprovals} from "./governance/ConsortiumApprovals.sol";
import {AccountPermissioning} from "./permissioning/AccountPermissioning.sol";

/**
 * @title Consortium
 * @notice The consortium of a crm-chaincode network: its organisations and their role grants
 * (OrganizationRoles), multi-organisation approval of consortium changes (ConsortiumApprovals),
 * and Besu account permissioning (AccountPermissioning). Other contracts of the consortium ask it
 * {hasActiveRole}.
 */
contract Consortium is ConsortiumApprovals, AccountPermissioning {
    /**
     * @notice Deploy the consortium: the deployer gets CONSORTIUM_ADMIN, and the founding
     * organisation (id 1) is created with `founderAdmin` as its first member and ORG_ADMIN.
     * @param founderName The founding organisation's name.
     * @param founderAdmin The founding organisation's first ORG_ADMIN.
     * @param initialThresholdBps Share of active organisations that must approve a proposal, in
     * basis points (1..10000; 5001 is a strict majority).
     * @param lifetime How long a proposal stays open, in seconds.
     */
    constructor(string memory founderName, address founderAdmin, uint16 initialThresholdBps, uint64 lifetime)
        ConsortiumApprovals(initialThresholdBps, lifetime)
    {
        _grantRole(CONSORTIUM_ADMIN, _msgSender());
        _addOrganization(founderName, founderAdmin);
    }

    /// @inheritdoc AccountPermissioning
    function supportsInterface(bytes4 interfaceId)
        public
        view
        virtual
        override(AccessControlEnumerable, AccountPermissioning)
        returns (bool)
    {
        return super.supportsInterface(interfaceId);
    }
}
