// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IAccountRules
 * @notice The account-permissioning interface that Hyperledger Besu calls (onchain account
 * permissioning, `--permissions-accounts-contract-address`) for every transaction it accepts into
 * its pool or imports in a block.
 */
interface IAccountRules {
    /**
     * @notice Whether a transaction with these properties may be processed.
     * @param sender The account that signed the transaction.
     * @param target The recipient (the zero address for a contract creation).
     * @param value The value transferred, in wei.
     * @param gasPrice The gas price offered.
     * @param gasLimit The gas limit.
     * @param payload The call data (or init code).
     * @return True if the transaction is allowed.
     */
    function transactionAllowed(
        address sender,
        address target,
        uint256 value,
        uint256 gasPrice,
        uint256 gasLimit,
        bytes calldata payload
    ) external view returns (bool);
}
