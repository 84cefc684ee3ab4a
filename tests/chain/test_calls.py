"""Batched view calls give what web3's contract calls give, with or without JSON-RPC batches."""

from __future__ import annotations

from typing import Any

import pytest
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from crm_gateway.chain.calls import batch_requester, call_batch, call_many
from crm_gateway.config import ChainKind
from crm_gateway.runtime import Runtime


def _lower(value: Any) -> Any:
    """Addresses compared without their checksum case (eth-abi decodes them lower-case)."""
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, tuple | list):
        return tuple(_lower(item) for item in value)
    return value


def test_the_embedded_chain_takes_no_batches_and_http_does() -> None:
    assert batch_requester(Web3(EthereumTesterProvider())) is None
    http = Web3(Web3.HTTPProvider("http://127.0.0.1:9"))  # never contacted
    assert batch_requester(http) is not None


def test_batched_calls_equal_single_calls(runtime: Runtime) -> None:
    w3 = runtime.chain.w3
    consortium = runtime.contracts["Consortium"]
    uses_batches = batch_requester(w3) is not None
    assert uses_batches == (runtime.settings.chain_kind is not ChainKind.EMBEDDED)

    org_ids = [1, 1, 1]
    batched = call_many(w3, consortium, "organization", [(org,) for org in org_ids])
    assert _lower(batched) == _lower(
        [(consortium.functions.organization(org).call(),) for org in org_ids]
    )
    count, name = call_batch(
        w3,
        [(consortium, "organizationCount", ()), (consortium, "organizationIdByName", ("founder",))],
    )
    assert count == (consortium.functions.organizationCount().call(),)
    assert name == (consortium.functions.organizationIdByName("founder").call(),)
    assert count[0] >= 1


def test_an_unknown_function_is_refused(runtime: Runtime) -> None:
    with pytest.raises(ValueError, match="not a function"):
        call_many(runtime.chain.w3, runtime.contracts["Consortium"], "noSuchFunction", [()])
