"""Turn a reverted call into the name and arguments of the custom error that caused it.

Revert data surfaces differently per chain: JSON-RPC nodes (Anvil, Besu) return it as hex in the
error's `data`, which web3 raises as `ContractCustomError`/`ContractLogicError`; eth-tester raises
`TransactionFailed` and keeps the raw bytes on the exception it wrapped. Both are decoded by the
4-byte selector against the ABIs we compiled, never by matching message text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.conversions import to_bytes
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError

from crm_gateway.chain.jsonable import to_jsonable

_ERROR_STRING = function_signature_to_4byte_selector("Error(string)")
_PANIC = function_signature_to_4byte_selector("Panic(uint256)")
_REVERT_EXCEPTIONS = {"TransactionFailed", "Revert"}


@dataclass(frozen=True)
class RevertError:
    """A decoded revert: the custom error's name and its arguments by name."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    selector: str = ""

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.name}({inner})"


def _canonical_type(param: dict[str, Any]) -> str:
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){kind[5:]}"
    return kind


class ErrorDecoder:
    """Knows every custom error in a set of ABIs, by selector."""

    def __init__(self, abis: Iterable[list[dict[str, Any]]]) -> None:
        self._errors: dict[bytes, dict[str, Any]] = {}
        for abi in abis:
            for item in abi:
                if item.get("type") == "error":
                    types = ",".join(_canonical_type(p) for p in item.get("inputs", []))
                    selector = function_signature_to_4byte_selector(f"{item['name']}({types})")
                    self._errors[selector] = item

    def name_of(self, selector: bytes) -> str | None:
        """The name of the custom error with this 4-byte selector, if we know it."""
        item = self._errors.get(selector)
        return None if item is None else str(item["name"])

    def decode_data(self, data: bytes) -> RevertError:
        """Decode raw revert data (selector + ABI-encoded arguments)."""
        if len(data) < 4:
            return RevertError(name="Reverted", args={}, selector="")
        selector, payload = data[:4], data[4:]
        try:
            if selector == _ERROR_STRING:
                return RevertError("Error", {"message": abi_decode(["string"], payload)[0]})
            if selector == _PANIC:
                return RevertError("Panic", {"code": abi_decode(["uint256"], payload)[0]})
            item = self._errors.get(selector)
            if item is None:
                return RevertError(
                    "UnknownError", {"data": "0x" + data.hex()}, "0x" + selector.hex()
                )
            inputs = item.get("inputs", [])
            values = abi_decode([_canonical_type(p) for p in inputs], payload)
        except DecodingError:
            return RevertError(
                "UndecodableError", {"data": "0x" + data.hex()}, "0x" + selector.hex()
            )
        args = {
            p.get("name") or f"arg{i}": to_jsonable(v)
            for i, (p, v) in enumerate(zip(inputs, values, strict=True))
        }
        return RevertError(item["name"], args, "0x" + selector.hex())

    def decode_exception(self, exc: BaseException) -> RevertError | None:
        """The revert an exception carries, or None when it is not a revert at all."""
        data = revert_data(exc)
        return None if data is None else self.decode_data(data)


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert bytes behind an exception from web3 or eth-tester, if it is a revert."""
    if isinstance(exc, ContractPanicError | ContractCustomError | ContractLogicError):
        data = exc.data
        if isinstance(data, str) and data.startswith("0x"):
            return to_bytes(hexstr=data)
        if isinstance(data, bytes):
            return data
        return b""
    # eth-tester re-raises py-evm's `Revert(bytes)` inside `TransactionFailed`, sometimes twice.
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    is_revert = False
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if type(current).__name__ in _REVERT_EXCEPTIONS:
            is_revert = True
            for arg in current.args:
                if isinstance(arg, bytes):
                    return arg
        pending.extend(a for a in current.args if isinstance(a, BaseException))
        pending.extend(e for e in (current.__context__, current.__cause__) if e is not None)
    return b"" if is_revert else None
