// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {OrganizationRoles} from "../access/OrganizationRoles.sol";
import {IAccountRules} from "./IAccountRules.sol";

/**
 * @title AccountPermissioning
 * @notice Besu onchain account permissioning backed by the consortium's organisations: an account
 * may transact iff it is a member of an active organisation or holds CONSORTIUM_ADMIN.
 *
 * @dev Besu calls {transactionAllowed} for every transaction, so it must never revert. The
 * CONSORTIUM_ADMIN exemption keeps the network operable by its operator whatever happens to the
 * organisations. Override {_accountPermitted} to refine the rule (e.g. by target or payload).
 */
abstract contract AccountPermissioning is IAccountRules, OrganizationRoles {
    /**
     * @notice Whether `sender` may submit a transaction: true iff it is a member of an active
     * organisation or holds CONSORTIUM_ADMIN. The other arguments are ignored.
     * @param sender The account that signed the transaction.
     * @param target The recipient (ignored).
     * @param value The value transferred (ignored).
     * @param gasPrice The gas price (ignored).
     * @param gasLimit The gas limit (ignored).
     * @param payload The call data (ignored).
     * @return True if the transaction is allowed.
     */
    function transactionAllowed(
        address sender,
        address target,
        uint256 value,
        uint256 gasPrice,
        uint256 gasLimit,
        bytes calldata payload
    ) external view virtual returns (bool) {
        return _transactionAllowed(sender, target, value, gasPrice, gasLimit, payload);
    }

    /**
     * @notice ERC-165: also reports {IAccountRules}.
     * @param interfaceId The interface id.
     * @return True if the interface is supported.
     */
    function supportsInterface(bytes4 interfaceId) public view virtual override returns (bool) {
        return interfaceId == type(IAccountRules).interfaceId || super.supportsInterface(interfaceId);
    }

    /// @dev The rule behind {transactionAllowed}; by default only the sender matters.
    function _transactionAllowed(address sender, address, uint256, uint256, uint256, bytes calldata)
        internal
        view
        virtual
        returns (bool)
    {
        return _accountPermitted(sender);
    }

    /// @dev Whether `account` may transact at all.
    function _accountPermitted(address account) internal view virtual returns (bool) {
        return isActiveMember(account) || hasRole(CONSORTIUM_ADMIN, account);
    }
}
