"""CustomerProfile and ProfilePatch: normalisation, limits, and errors that name the field."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from crm_gateway.customers.profile import (
    COUNTRY_CODES,
    CUSTOM_ATTRIBUTES_MAX,
    CustomerProfile,
    ProfilePatch,
    email_index_form,
    normalise_phone,
)

BASE: dict[str, Any] = {"email": "alice@example.com"}


def _parse(**fields: Any) -> CustomerProfile:
    return CustomerProfile.parse({**BASE, **fields}, phone_region="GB")


def _error_locs(exc: pytest.ExceptionInfo[ValidationError]) -> set[tuple[str | int, ...]]:
    return {tuple(error["loc"]) for error in exc.value.errors()}


FULL: dict[str, Any] = {
    "given_name": "  Zoë   Anne ",
    "family_name": "O'Brien-Smith",
    "email": "  Alice@Example.COM ",
    "phone": "020 7946 0958",
    "postal_address": {
        "lines": ["Flat 2", " 10  Downing   Street "],
        "city": "London",
        "postcode": "sw1a 2aa",
        "country": "gb",
    },
    "birth_date": "1990-02-28",
    "custom_attributes": {"tier": "gold", "visits": 12, "score": 4.5, "vip": True},
}


def test_full_profile_is_normalised() -> None:
    profile = CustomerProfile.parse(FULL, phone_region="GB")
    assert profile.given_name == "Zoë Anne"
    assert profile.family_name == "O'Brien-Smith"
    assert profile.email == "Alice@example.com"
    assert profile.email_index == "alice@example.com"
    assert profile.phone == "+442079460958"
    assert profile.postal_address is not None
    assert profile.postal_address.lines == ["Flat 2", "10 Downing Street"]
    assert profile.postal_address.postcode == "SW1A 2AA"
    assert profile.postal_address.country == "GB"
    assert profile.birth_date == date(1990, 2, 28)
    attributes = profile.custom_attributes
    assert attributes == {"tier": "gold", "visits": 12, "score": 4.5, "vip": True}
    assert type(attributes["vip"]) is bool
    assert type(attributes["visits"]) is int


def test_email_and_phone_examples_are_equal() -> None:
    assert _parse(email="  Alice@Example.COM ").email_index == _parse().email_index
    assert email_index_form("  Alice@Example.COM ") == email_index_form("alice@example.com")
    assert _parse(phone="+44 20 7946 0958").phone == _parse(phone="020 7946 0958").phone
    assert normalise_phone("020 7946 0958", "GB") == "+442079460958"


def test_phone_region_comes_from_the_context_or_the_settings() -> None:
    french = CustomerProfile.parse({**BASE, "phone": "01 23 45 67 89"}, phone_region="FR")
    assert french.phone == "+33123456789"
    # Without a context: DEFAULT_PHONE_REGION (GB by default).
    assert CustomerProfile.model_validate({**BASE, "phone": "020 7946 0958"}).phone == (
        "+442079460958"
    )


def test_canonical_json_round_trips_and_ignores_input_order() -> None:
    profile = CustomerProfile.parse(FULL, phone_region="GB")
    canonical = profile.canonical_json()
    compact = json.dumps(
        json.loads(canonical), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert canonical == compact.encode("utf-8")
    assert CustomerProfile.from_canonical(canonical) == profile
    reordered = CustomerProfile.parse(dict(reversed(FULL.items())), phone_region="GB")
    assert reordered.canonical_json() == canonical
    assert b"null" not in _parse().canonical_json()  # absent fields are left out


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"email": "not-an-email"}, ("email",)),
        ({"email": "a@b"}, ("email",)),
        ({"email": '"quoted"@example.com'}, ("email",)),
        ({"email": "x@[127.0.0.1]"}, ("email",)),
        ({"email": "a" * 250 + "@example.com"}, ("email",)),
        ({"email": 42}, ("email",)),
        ({"phone": "12345"}, ("phone",)),
        ({"phone": "not a phone"}, ("phone",)),
        ({"phone": "020 7946 0958 ext. 12"}, ("phone",)),
        ({"phone": "+44" + " " * 30 + "2079460958"}, ("phone",)),
        ({"phone": "1" * 33}, ("phone",)),
        ({"given_name": "   "}, ("given_name",)),
        ({"given_name": "x" * 101}, ("given_name",)),
        ({"family_name": "Smith\x00"}, ("family_name",)),
        ({"family_name": "evil\u202ename"}, ("family_name",)),
        ({"given_name": 7}, ("given_name",)),
        ({"birth_date": "1899-12-31"}, ("birth_date",)),
        ({"birth_date": "2020-02-30"}, ("birth_date",)),
        ({"birth_date": "20200101"}, ("birth_date",)),
        ({"birth_date": "2020-01-01T00:00:00"}, ("birth_date",)),
        ({"birth_date": 1_600_000_000}, ("birth_date",)),
        (
            {"postal_address": {"lines": [], "city": "x", "country": "GB"}},
            ("postal_address", "lines"),
        ),
        (
            {"postal_address": {"lines": ["a"] * 5, "city": "x", "country": "GB"}},
            ("postal_address", "lines"),
        ),
        (
            {"postal_address": {"lines": ["a" * 101], "city": "x", "country": "GB"}},
            ("postal_address", "lines", 0),
        ),
        (
            {"postal_address": {"lines": ["a"], "city": "x", "country": "UK"}},
            ("postal_address", "country"),
        ),
        ({"postal_address": {"lines": ["a"], "city": "x"}}, ("postal_address", "country")),
        (
            {"postal_address": {"lines": ["a"], "city": "x", "country": "GB", "postcode": "AB#1"}},
            ("postal_address", "postcode"),
        ),
        (
            {"postal_address": {"lines": ["a"], "city": "x", "country": "GB", "zip": "1"}},
            ("postal_address", "zip"),
        ),
        ({"custom_attributes": {"1bad": "x"}}, ("custom_attributes", "1bad", "[key]")),
        ({"custom_attributes": {"k" * 65: "x"}}, ("custom_attributes", "k" * 65, "[key]")),
        ({"custom_attributes": {"note": "x" * 1001}}, ("custom_attributes", "note")),
        ({"custom_attributes": {"big": 2**53}}, ("custom_attributes", "big")),
        ({"custom_attributes": {"nested": {"a": 1}}}, ("custom_attributes", "nested")),
        ({"custom_attributes": {"nan": float("nan")}}, ("custom_attributes", "nan")),
        ({"custom_attributes": {"bell": "ding\x07"}}, ("custom_attributes", "bell")),
        ({"nickname": "Al"}, ("nickname",)),
    ],
)
def test_invalid_fields_are_named(fields: dict[str, Any], loc: tuple[str | int, ...]) -> None:
    with pytest.raises(ValidationError) as exc:
        _parse(**fields)
    assert loc in _error_locs(exc)


def test_email_is_required() -> None:
    with pytest.raises(ValidationError) as exc:
        CustomerProfile.parse({"given_name": "Alice"})
    assert _error_locs(exc) == {("email",)}


def test_limits_are_inclusive() -> None:
    assert _parse(given_name="x" * 100).given_name == "x" * 100
    assert _parse(custom_attributes={"note": "x" * 1000, "n": 2**53 - 1}).custom_attributes
    assert _parse(custom_attributes={"k" * 64: 1}).custom_attributes
    many = {f"k{i}": i for i in range(CUSTOM_ATTRIBUTES_MAX)}
    assert len(_parse(custom_attributes=many).custom_attributes) == CUSTOM_ATTRIBUTES_MAX
    with pytest.raises(ValidationError) as exc:
        _parse(custom_attributes={**many, "one_more": 1})
    assert _error_locs(exc) == {("custom_attributes",)}
    four_lines = {"lines": ["a"] * 4, "city": "c", "country": "GB"}
    address = _parse(postal_address=four_lines).postal_address
    assert address is not None
    assert len(address.lines) == 4
    assert _parse(custom_attributes={"note": "line 1\nline 2\ttab"}).custom_attributes


def test_birth_date_bounds() -> None:
    assert _parse(birth_date="1900-01-01").birth_date == date(1900, 1, 1)
    today = datetime.now(UTC).date()
    assert _parse(birth_date=today.isoformat()).birth_date == today
    assert _parse(birth_date=date(2000, 1, 1)).birth_date == date(2000, 1, 1)
    with pytest.raises(ValidationError) as exc:
        _parse(birth_date=(today + timedelta(days=2)).isoformat())
    assert "future" in str(exc.value)


def test_country_codes() -> None:
    assert len(COUNTRY_CODES) == 250  # 249 ISO 3166-1 alpha-2 codes + XK
    assert {"GB", "FR", "US", "AQ", "XK"} <= COUNTRY_CODES
    assert "UK" not in COUNTRY_CODES


def test_patch_applies_replaces_and_removes() -> None:
    profile = CustomerProfile.parse(FULL, phone_region="GB")
    patch = ProfilePatch.parse(
        {"phone": None, "given_name": "Bob", "custom_attributes": {"tier": "silver"}},
        phone_region="GB",
    )
    updated = patch.apply_to(profile)
    assert updated.given_name == "Bob"
    assert updated.phone is None
    assert updated.custom_attributes == {"tier": "silver"}  # replaced, not merged
    assert updated.email == profile.email
    assert updated.postal_address == profile.postal_address
    assert ProfilePatch.parse({"email": " Bob@Example.com"}).apply_to(profile).email_index == (
        "bob@example.com"
    )
    national = ProfilePatch.parse({"phone": "01 23 45 67 89"}, phone_region="FR")
    assert national.apply_to(profile).phone == "+33123456789"
    cleared = ProfilePatch.parse({"custom_attributes": None}).apply_to(profile)
    assert cleared.custom_attributes == {}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"email": None}, ("email",)),
        ({"email": "nope"}, ("email",)),
        ({"phone": "123"}, ("phone",)),
        ({"shoe_size": 42}, ("shoe_size",)),
        ({}, ()),
    ],
)
def test_invalid_patches(body: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as exc:
        ProfilePatch.parse(body)
    assert loc in _error_locs(exc)


@given(
    name=st.text(
        alphabet=st.characters(categories=["L", "M", "N", "Zs", "Pd", "Po"]),
        min_size=1,
        max_size=60,
    ).filter(lambda s: s.strip())
)
def test_names_are_stable_under_renormalisation(name: str) -> None:
    try:
        profile = _parse(given_name=name)
    except ValidationError:
        return  # e.g. longer than 100 characters once NFC-normalised: refused, fine
    assert profile.given_name is not None
    again = _parse(given_name=profile.given_name)
    assert again.given_name == profile.given_name
    assert CustomerProfile.from_canonical(profile.canonical_json()) == profile
