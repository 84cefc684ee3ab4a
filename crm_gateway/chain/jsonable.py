"""Values decoded from the chain, made safe for JSON (bytes as hex, big integers as strings)."""

from __future__ import annotations

from typing import Any

# Integers beyond 2**53 lose precision in JavaScript clients, so they travel as strings.
_JS_SAFE_INTEGER = 2**53


def to_jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _JS_SAFE_INTEGER:
        return str(value)
    return value
