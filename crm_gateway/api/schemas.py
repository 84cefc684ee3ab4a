"""Base models and field types shared by every router's request and response models.

* `StrictModel` for request bodies: unknown fields are errors (named in the 422 problem).
* `ResponseModel` for responses: built from ORM objects or dicts.
* `EthAddress`: a 20-byte address as `0x` + 40 hex digits; all-lower or all-upper case is
  accepted, mixed case must be a correct EIP-55 checksum; the value is normalised to checksum case.
* `Bytes32Hex`: `0x` + 64 hex digits, normalised to lower case.

Validation errors are `PydanticCustomError`s with a fixed message, so a problem response says
e.g. `body.account: not a valid Ethereum address: ...` and never echoes the input.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from eth_utils.address import (
    is_address,
    is_checksum_address,
    is_checksum_formatted_address,
    to_checksum_address,
)
from fastapi import Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)
_BYTES32_RE: Final = re.compile(r"0x[0-9a-fA-F]{64}", re.ASCII)

EXAMPLE_ADDRESS: Final = "0x52908400098527886E0F7030069857D2E4169EE7"


class StrictModel(BaseModel):
    """Base of request bodies: unknown fields are refused, strings are not coerced from numbers."""

    model_config = ConfigDict(extra="forbid")


class ResponseModel(BaseModel):
    """Base of response bodies; `model_validate` accepts ORM objects."""

    model_config = ConfigDict(from_attributes=True)


def parse_eth_address(value: str) -> str:
    """`value` as an EIP-55 checksum address, or a `PydanticCustomError` saying what is wrong."""
    if _ADDRESS_RE.fullmatch(value) is None:
        raise PydanticCustomError(
            "eth_address",
            "not a valid Ethereum address: expected 0x followed by 40 hex digits",
        )
    if not is_address(value):
        raise PydanticCustomError("eth_address", "not a valid Ethereum address")
    if is_checksum_formatted_address(value) and not is_checksum_address(value):
        raise PydanticCustomError(
            "eth_address_checksum",
            "not a valid Ethereum address: mixed-case address with a wrong EIP-55 checksum",
        )
    return str(to_checksum_address(value))


def parse_bytes32_hex(value: str) -> str:
    """`value` as lower-case `0x` + 64 hex digits, or a `PydanticCustomError`."""
    if _BYTES32_RE.fullmatch(value) is None:
        raise PydanticCustomError(
            "bytes32_hex", "not a valid 32-byte value: expected 0x followed by 64 hex digits"
        )
    return value.lower()


_ADDRESS_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "pattern": "^0x[0-9a-fA-F]{40}$",
    "description": "20-byte account address (EIP-55 checksum case in responses)",
    "examples": [EXAMPLE_ADDRESS],
}
_BYTES32_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "pattern": "^0x[0-9a-fA-F]{64}$",
    "description": "32 bytes as 0x-prefixed hex (lower case in responses)",
    "examples": ["0x" + "ab" * 32],
}

EthAddress = Annotated[str, AfterValidator(parse_eth_address), WithJsonSchema(_ADDRESS_SCHEMA)]
Bytes32Hex = Annotated[str, AfterValidator(parse_bytes32_hex), WithJsonSchema(_BYTES32_SCHEMA)]


# --- integers with their real bounds -----------------------------------------------------------
#: The largest value the gateway's databases hold (SQLite INTEGER and PostgreSQL BIGINT are
#: signed 64-bit): ids and block numbers above it cannot exist here, so they are refused as
#: input (422) rather than reaching a query that cannot take them.
MAX_STORED_INT: Final = 2**63 - 1
MAX_UINT64: Final = 2**64 - 1
MAX_UINT256: Final = 2**256 - 1

_ORG_ID_DESCRIPTION: Final = (
    "An organisation id (uint64 on-chain, given out from 1 up; at most 2^63-1 here)"
)
#: An organisation id in a body.
OrgIdField = Annotated[int, Field(ge=1, le=MAX_STORED_INT, description=_ORG_ID_DESCRIPTION)]
#: An organisation id in a query.
OrgIdQuery = Annotated[int, Query(ge=1, le=MAX_STORED_INT, description=_ORG_ID_DESCRIPTION)]
#: A block number in a query.
BlockQuery = Annotated[int, Query(ge=0, le=MAX_STORED_INT, description="A block number")]


class TypedDataOut(BaseModel):
    """EIP-712 typed data, as `eth_signTypedData_v4` takes it."""

    model_config = ConfigDict(populate_by_name=True)

    types: dict[str, list[dict[str, str]]]
    primary_type: str = Field(alias="primaryType")
    domain: dict[str, Any]
    message: dict[str, Any]
