"""Sign-In with Ethereum (EIP-4361): parse a message exactly as the standard writes it, and check
it against what this gateway asked for (its domain and URI, its chain, a one-time nonce it issued,
a time window) and against the wallet's `personal_sign` signature (EIP-191), with eth-account.

Only the fields the gateway relies on are accepted, in the order of the standard; anything else
(an unknown line, a missing field, a different domain) is a refusal with a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.address import is_checksum_address

_HEADER: Final = re.compile(
    r"^(?P<domain>[A-Za-z0-9.\-]+(?::[0-9]{1,5})?) wants you to sign in with your Ethereum "
    r"account:\n(?P<address>0x[0-9a-fA-F]{40})\n\n",
)
_STATEMENT: Final = re.compile(r"^(?P<statement>[^\n]*)\n\n")
_FIELDS: Final = (
    ("uri", "URI"),
    ("version", "Version"),
    ("chain_id", "Chain ID"),
    ("nonce", "Nonce"),
    ("issued_at", "Issued At"),
    ("expiration_time", "Expiration Time"),
)
_OPTIONAL: Final = {"expiration_time"}
_NONCE: Final = re.compile(r"^[A-Za-z0-9]{8,}$")
MAX_MESSAGE_LENGTH: Final = 4096


class SiweError(ValueError):
    """The message or its signature is not acceptable; the text says why."""


@dataclass(frozen=True)
class SiweMessage:
    domain: str
    address: str
    statement: str | None
    uri: str
    version: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration_time: datetime | None


def _time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SiweError(f"{name} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise SiweError(f"{name} has no time zone")
    return parsed.astimezone(UTC)


def parse(text: str) -> SiweMessage:
    """The fields of an EIP-4361 message; `SiweError` when it is not one."""
    if len(text) > MAX_MESSAGE_LENGTH:
        raise SiweError("the message is too long")
    header = _HEADER.match(text)
    if header is None:
        raise SiweError("not a Sign-In with Ethereum message")
    rest = text[header.end() :]
    statement = None
    if rest.startswith("\nURI: "):  # no statement: an empty line stands in its place
        rest = rest[1:]
    elif not rest.startswith("URI: "):
        found = _STATEMENT.match(rest)
        if found is None:
            raise SiweError("malformed statement")
        statement, rest = found.group("statement"), rest[found.end() :]
    values: dict[str, str] = {}
    lines = rest.split("\n")
    for name, label in _FIELDS:
        if lines and lines[0].startswith(f"{label}: "):
            values[name] = lines.pop(0)[len(label) + 2 :]
        elif name not in _OPTIONAL:
            raise SiweError(f"missing {label}")
    if lines:
        raise SiweError(f"unexpected line {lines[0][:40]!r}")
    if not is_checksum_address(header.group("address")):
        raise SiweError("the address is not EIP-55 checksummed")
    if values["version"] != "1":
        raise SiweError("only version 1 is known")
    if not values["chain_id"].isdigit():
        raise SiweError("Chain ID is not a number")
    if not _NONCE.match(values["nonce"]):
        raise SiweError("the nonce is not 8 or more alphanumeric characters")
    expiry = values.get("expiration_time")
    return SiweMessage(
        domain=header.group("domain"),
        address=header.group("address"),
        statement=statement,
        uri=values["uri"],
        version="1",
        chain_id=int(values["chain_id"]),
        nonce=values["nonce"],
        issued_at=_time(values["issued_at"], "Issued At"),
        expiration_time=_time(expiry, "Expiration Time") if expiry else None,
    )


def recover(text: str, signature: str) -> str:
    """The address that `personal_sign`ed `text`."""
    try:
        return str(Account.recover_message(encode_defunct(text=text), signature=signature))
    except Exception as exc:  # eth-account raises several kinds for a malformed signature
        raise SiweError("the signature is malformed") from exc


def verify(
    text: str,
    signature: str,
    *,
    domain: str,
    uri: str,
    chain_id: int,
    now: datetime,
    max_lifetime_seconds: int,
) -> SiweMessage:
    """The message, once it names this gateway and is in its time window and was signed by the
    address it names. The nonce is the caller's to check (and consume) afterwards."""
    message = parse(text)
    if message.domain != domain:
        raise SiweError(f"the message is for {message.domain}, this is {domain}")
    if message.uri != uri:
        raise SiweError(f"the message is for URI {message.uri}, this is {uri}")
    if message.chain_id != chain_id:
        raise SiweError(f"the message is for chain {message.chain_id}, this is {chain_id}")
    if message.expiration_time is None:
        raise SiweError("the message has no Expiration Time")
    if message.expiration_time <= now:
        raise SiweError("the message has expired")
    if (message.expiration_time - message.issued_at).total_seconds() > max_lifetime_seconds:
        raise SiweError(f"the message may be valid for {max_lifetime_seconds} seconds at most")
    if (message.issued_at - now).total_seconds() > 60:
        raise SiweError("the message is issued in the future")
    if recover(text, signature) != message.address:
        raise SiweError("the signature is not by the address the message names")
    return message
