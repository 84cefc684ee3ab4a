// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Burnable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Burnable.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/**
 * @title PlainToken
 * @notice TEST ONLY, never deployed by a migration: a plain OpenZeppelin ERC20 (with EIP-2612
 * permits, burning and an owner-only mint) that the gas comparison deploys next to LoyaltyPoints
 * as the baseline for the same operations (see tests/contracts/gas_compare.py).
 */
contract PlainToken is ERC20, ERC20Permit, ERC20Burnable, Ownable {
    /**
     * @notice Deploy the baseline token.
     * @param name_ The token name (also the EIP-712 domain name).
     * @param symbol_ The token symbol.
     * @param owner_ The account allowed to mint.
     */
    constructor(string memory name_, string memory symbol_, address owner_)
        ERC20(name_, symbol_)
        ERC20Permit(name_)
        Ownable(owner_)
    {}

    /**
     * @notice Mint `amount` to `to`. Caller: the owner.
     * @param to The receiver.
     * @param amount The amount.
     */
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
