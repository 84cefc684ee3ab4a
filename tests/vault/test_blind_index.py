"""Blind indexes: equal for equal normalised inputs; different across kinds, keys, generations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_gateway.customers.profile import email_index_form, normalise_phone
from crm_gateway.vault.blind_index import BlindIndexer

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture
def indexer() -> BlindIndexer:
    return BlindIndexer(KEY)


def test_email_examples_are_the_same_customer(indexer: BlindIndexer) -> None:
    first = email_index_form("  Alice@Example.COM ")
    second = email_index_form("alice@example.com")
    assert first == second == "alice@example.com"
    assert indexer.email(first) == indexer.email(second)
    assert indexer.customer_id(first) == indexer.customer_id(second)
    assert indexer.email(first) != indexer.email(email_index_form("alice2@example.com"))


def test_phone_examples_are_the_same_number(indexer: BlindIndexer) -> None:
    international = normalise_phone("+44 20 7946 0958", "GB")
    national = normalise_phone("020 7946 0958", "GB")
    assert international == national == "+442079460958"
    assert indexer.phone(international) == indexer.phone(national)


def test_kinds_are_domain_separated(indexer: BlindIndexer) -> None:
    # The same string indexed as e-mail, as phone and as id gives unrelated values.
    value = "+442079460958@x"
    email = indexer.email(value.lower())
    id_hex = indexer.customer_id(value.lower()).hex()
    assert email != id_hex
    phone = indexer.phone("+442079460958")
    assert phone not in {email, id_hex}
    assert len(email) == len(phone) == 64
    assert len(indexer.customer_id(value.lower())) == 32


def test_generations_and_keys_give_new_ids(indexer: BlindIndexer) -> None:
    email = "alice@example.com"
    ids = {indexer.customer_id(email, generation) for generation in range(5)}
    assert len(ids) == 5
    other = BlindIndexer(OTHER_KEY)
    assert other.customer_id(email) != indexer.customer_id(email)
    assert other.email(email) != indexer.email(email)
    assert other.fingerprint() != indexer.fingerprint()
    assert BlindIndexer(KEY).fingerprint() == indexer.fingerprint()
    with pytest.raises(ValueError, match="generation"):
        indexer.customer_id(email, -1)


@pytest.mark.parametrize("bad", [" alice@example.com", "Alice@example.com", "alice", ""])
def test_non_normalised_email_is_refused(indexer: BlindIndexer, bad: str) -> None:
    with pytest.raises(ValueError, match="normalised"):
        indexer.email(bad)
    with pytest.raises(ValueError, match="normalised"):
        indexer.customer_id(bad)


@pytest.mark.parametrize("bad", ["020 7946 0958", "442079460958", "+0123", "+1234567890123456"])
def test_non_e164_phone_is_refused(indexer: BlindIndexer, bad: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        indexer.phone(bad)


def test_key_must_be_256_bits() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        BlindIndexer(b"short")


@given(
    local=st.from_regex(r"[a-z][a-z0-9._]{0,15}[a-z0-9]", fullmatch=True).filter(
        lambda s: ".." not in s and "._" not in s
    ),
    domain=st.sampled_from(["example.com", "mail.example.org", "crm.test.co.uk"]),
    flips=st.lists(st.booleans(), min_size=40, max_size=40),
    left=st.sampled_from(["", " ", "  ", "\t", " \n "]),
    right=st.sampled_from(["", " ", "\t ", "\n"]),
)
def test_case_and_spacing_never_change_the_index(
    local: str, domain: str, flips: list[bool], left: str, right: str
) -> None:
    indexer = BlindIndexer(KEY)
    address = f"{local}@{domain}"
    shouted = "".join(c.upper() if flip else c for c, flip in zip(address, flips, strict=False))
    shouted += address[len(flips) :]
    variant = email_index_form(left + shouted + right)
    assert variant == address
    assert indexer.email(variant) == indexer.email(address)
    assert indexer.customer_id(variant) == indexer.customer_id(address)


@given(
    subscriber=st.integers(min_value=0, max_value=9999),
    style=st.sampled_from(
        [
            "+44 20 7946 {:04d}",
            "020 7946 {:04d}",
            "(020) 7946-{:04d}",
            "+44 (0)20 7946 {:04d}",
            "0044 20 7946 {:04d}",
            "02079460{:03d}",
        ]
    ),
)
def test_phone_formats_agree(subscriber: int, style: str) -> None:
    number = subscriber % 1000 if style.endswith("{:03d}") else subscriber
    canonical = normalise_phone(f"+44 20 7946 {number:04d}", "GB")
    assert normalise_phone(style.format(number), "GB") == canonical
