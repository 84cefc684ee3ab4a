"""Many calls of one view function at once: one JSON-RPC batch where the provider supports it.

An import asks the registry about a hundred customer ids at a time. Through web3's contract
objects each call costs milliseconds of Python (ABI lookup, argument validation, formatters, and
an `eth_chainId` round trip per `eth_call` from the validation middleware) before it even reaches
the node. Here the function's selector and types are worked out once, arguments are ABI-encoded
with `eth_abi`, and the `eth_call`s go out as one JSON-RPC batch (in slices of `BATCH_LIMIT`).
Providers without batch support (the embedded eth-tester chain) get the same calls one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from eth_abi.abi import decode, encode
from eth_utils.abi import collapse_if_tuple, function_abi_to_4byte_selector
from web3 import Web3
from web3.contract import Contract
from web3.types import BlockIdentifier, RPCEndpoint, RPCResponse, TxParams

#: Calls per JSON-RPC batch (nodes cap batch sizes; Besu's default limit is 1024).
BATCH_LIMIT = 200


class ChainCallError(RuntimeError):
    """A node answered a batched call with an error (a view function should never revert)."""


def call_many(
    w3: Web3,
    contract: Contract,
    function: str,
    arguments: Sequence[Sequence[Any]],
    *,
    block: BlockIdentifier = "latest",
) -> list[tuple[Any, ...]]:
    """`contract.function(*args)` for each of `arguments`, all at `block`: the decoded outputs."""
    abi = next(
        (
            item
            for item in contract.abi
            if item.get("type") == "function" and item.get("name") == function
        ),
        None,
    )
    if abi is None:
        raise ValueError(f"{function} is not a function of the contract")
    entry = cast(Any, abi)
    selector = function_abi_to_4byte_selector(entry)
    inputs = [collapse_if_tuple(dict(item)) for item in entry.get("inputs", [])]
    outputs = [collapse_if_tuple(dict(item)) for item in entry.get("outputs", [])]
    block_param = hex(block) if isinstance(block, int) else str(block)
    requests = [
        (
            RPCEndpoint("eth_call"),
            [
                {"to": contract.address, "data": "0x" + (selector + encode(inputs, args)).hex()},
                block_param,
            ],
        )
        for args in arguments
    ]
    batch = getattr(w3.provider, "make_batch_request", None)
    results: list[tuple[Any, ...]] = []
    for start in range(0, len(requests), BATCH_LIMIT):
        chunk = requests[start : start + BATCH_LIMIT]
        try:
            if batch is None:
                raise NotImplementedError
            responses = batch(chunk)
        except NotImplementedError:  # no batches here (eth-tester): one call at a time
            for _method, (call, _block) in chunk:
                results.append(decode(outputs, bytes(w3.eth.call(cast(TxParams, call), block))))
            continue
        if not isinstance(responses, list):  # the node refused the batch as a whole
            raise ChainCallError(f"the node refused a batch of calls: {responses.get('error')}")
        for response in cast(list[RPCResponse], responses):
            if "error" in response or "result" not in response:
                raise ChainCallError(f"{function} failed: {response.get('error')}")
            results.append(decode(outputs, bytes.fromhex(str(response["result"])[2:])))
    return results
