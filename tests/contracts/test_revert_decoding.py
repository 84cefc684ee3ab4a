"""`decode_revert` on both chains: custom errors, panics, bare reverts, unknown data."""

from __future__ import annotations

import pytest
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import ContractCustomError, ContractLogicError


def test_panic_is_decoded(chain, consortium):
    # Arithmetic overflow in the pure helper: Panic(0x11).
    with chain.reverts("Panic", 0x11):
        consortium.functions.computeRequiredApprovals(2**256 - 1, 10_000).call()


def test_bare_revert_decodes_to_empty(chain, consortium, accounts, decode_revert):
    # The contract has no receive function: plain value transfers revert without data.
    with pytest.raises((TransactionFailed, ContractLogicError)) as info:
        chain.w3.eth.send_transaction({"from": accounts[0], "to": consortium.address, "value": 1})
    assert decode_revert(info.value, chain.abi) == ("", ())


def test_unknown_selector_and_missing_data_are_reported(consortium_artifact, decode_revert):
    abi = consortium_artifact["abi"]
    with pytest.raises(ValueError, match="unknown error selector 0xdeadbeef"):
        decode_revert(ContractCustomError("0xdeadbeef", data="0xdeadbeef"), abi)
    with pytest.raises(ValueError, match="no revert data"):
        decode_revert(RuntimeError("boom"), abi)
