"""Sign-In with Ethereum messages: what is parsed, and every way one is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from crm_gateway.security import siwe

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
# A fixed key: parametrised cases embed its address, so every xdist worker collects them alike.
WALLET = Account.from_key(b"\x5a" * 32)
DOMAIN, URI, CHAIN = "127.0.0.1:8000", "http://127.0.0.1:8000/portal/", 31337


def message(**change: str) -> str:
    fields = {
        "domain": DOMAIN,
        "address": WALLET.address,
        "statement": "Sign in.",
        "uri": URI,
        "version": "1",
        "chain": str(CHAIN),
        "nonce": "abcdef0123456789",
        "issued": "2026-12-01T11:59:00.000Z",
        "expires": "2026-12-01T12:04:00.000Z",
    } | change
    text = (
        f"{fields['domain']} wants you to sign in with your Ethereum account:\n"
        f"{fields['address']}\n\n{fields['statement']}\n\nURI: {fields['uri']}\n"
        f"Version: {fields['version']}\nChain ID: {fields['chain']}\nNonce: {fields['nonce']}\n"
        f"Issued At: {fields['issued']}"
    )
    return text + (f"\nExpiration Time: {fields['expires']}" if fields["expires"] else "")


def sign(text: str, account: object = WALLET) -> str:
    return account.sign_message(encode_defunct(text=text)).signature.to_0x_hex()  # type: ignore[attr-defined]


def check(text: str, signature: str | None = None) -> siwe.SiweMessage:
    return siwe.verify(
        text,
        signature or sign(text),
        domain=DOMAIN,
        uri=URI,
        chain_id=CHAIN,
        now=NOW,
        max_lifetime_seconds=600,
    )


def test_a_good_message_names_its_signer_and_fields() -> None:
    parsed = check(message())
    assert parsed.address == WALLET.address
    assert parsed.nonce == "abcdef0123456789"
    assert parsed.expiration_time == NOW + timedelta(minutes=4)


def test_a_message_without_statement_parses() -> None:
    text = message().replace("Sign in.\n\n", "\n")
    assert siwe.parse(text).statement is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"domain": "evil.example"}, "is for evil.example"),
        ({"uri": "http://127.0.0.1:8000/other/"}, "is for URI"),
        ({"chain": "1"}, "is for chain 1"),
        ({"expires": ""}, "no Expiration Time"),
        ({"expires": "2026-12-01T11:59:30.000Z"}, "expired"),
        ({"expires": "2026-12-01T13:00:00.000Z"}, "600 seconds at most"),
        ({"issued": "2026-12-01T12:30:00.000Z", "expires": "2026-12-01T12:31:00.000Z"}, "future"),
        ({"version": "2"}, "version 1"),
        ({"nonce": "short"}, "nonce"),
        ({"address": WALLET.address.lower()}, "checksummed"),
        ({"issued": "yesterday"}, "RFC 3339"),
    ],
)
def test_refusals_say_why(change: dict[str, str], why: str) -> None:
    with pytest.raises(siwe.SiweError, match=why):
        check(message(**change))


def test_a_signature_by_another_wallet_is_refused() -> None:
    text = message()
    with pytest.raises(siwe.SiweError, match="not by the address"):
        check(text, sign(text, Account.create()))


def test_an_edited_message_no_longer_matches_its_signature() -> None:
    text = message()
    signature = sign(text)
    with pytest.raises(siwe.SiweError, match="not by the address"):
        check(text.replace("Sign in.", "Sign in!"), signature)


@pytest.mark.parametrize(
    "text",
    [
        "hello",
        message() + "\nResources:\n- https://evil.example",
        message().replace("URI: ", "Uri: "),
        message().replace("\nVersion: 1", ""),
    ],
)
def test_what_is_not_a_message_of_ours_is_refused(text: str) -> None:
    with pytest.raises(siwe.SiweError):
        check(text)


def test_malformed_signature() -> None:
    with pytest.raises(siwe.SiweError, match="malformed"):
        check(message(), "0x" + "00" * 65)
