"""Header recognition, mapping overrides and row-to-profile conversion (no chain, no database)."""

from __future__ import annotations

import pytest

from crm_gateway.customers.profile import CustomerProfile
from crm_gateway.services.importer import ImportFailed, country_code, map_columns
from tests.importer.csvgen import HEADER

# The export the generator writes (a Salesforce contact report's columns).
SALESFORCE = HEADER
HUBSPOT = [
    "First Name",
    "Last Name",
    "Email",
    "Phone Number",
    "Street Address",
    "City",
    "State/Region",
    "Postal Code",
    "Country/Region",
    "Lifecycle Stage",
]
GENERIC = [
    "given_name",
    "family_name",
    "email",
    "phone",
    "birth_date",
    "address_line1",
    "address_line2",
    "city",
    "postcode",
    "country",
]


def test_salesforce_headers() -> None:
    mapping = map_columns(SALESFORCE)
    assert mapping.columns == {
        "FirstName": "given_name",
        "LastName": "family_name",
        "Email": "email",
        "Birthdate": "birth_date",
        "MailingCity": "city",
        "MailingPostalCode": "postcode",
        "MailingCountry": "country",
        "Phone": "phone",
        "MobilePhone": "phone",
        "MailingStreet": "postal_address.lines (1)",
    }
    assert mapping.ignored == ("LeadSource",)


def test_hubspot_headers() -> None:
    mapping = map_columns(HUBSPOT)
    assert mapping.columns["First Name"] == "given_name"
    assert mapping.columns["Phone Number"] == "phone"
    assert mapping.columns["Street Address"] == "postal_address.lines (1)"
    assert mapping.columns["State/Region"] == "region"
    assert mapping.columns["Postal Code"] == "postcode"
    assert mapping.columns["Country/Region"] == "country"
    assert mapping.ignored == ("Lifecycle Stage",)


def test_generic_headers_and_any_case_or_spacing() -> None:
    assert set(map_columns(GENERIC).columns) == set(GENERIC)
    assert not map_columns(GENERIC).ignored
    shouting = map_columns(["  E-MAIL ", "FIRST_NAME", "Date Of Birth", "ZIP"])
    assert shouting.columns == {
        "E-MAIL": "email",
        "FIRST_NAME": "given_name",
        "Date Of Birth": "birth_date",
        "ZIP": "postcode",
    }


def test_a_file_without_an_email_column_is_refused() -> None:
    with pytest.raises(ImportFailed, match="no e-mail column"):
        map_columns(["FirstName", "LastName", "Phone"])


def test_two_columns_for_one_field_are_refused_unless_mapped() -> None:
    with pytest.raises(ImportFailed, match="'Email' and 'E-mail' both map to email"):
        map_columns(["Email", "E-mail"])
    mapping = map_columns(["Email", "E-mail"], overrides={"e-mail": None})
    assert mapping.columns == {"Email": "email"}
    assert mapping.ignored == ("E-mail",)


def test_mapping_overrides() -> None:
    mapping = map_columns(
        ["Mail", "Vorname", "Notes", "Tier", "Email"],
        overrides={
            "Mail": "email",
            "vorname": "given_name",
            "Notes": None,
            "Tier": "custom:loyalty_tier",
            "Email": "ignore",
        },
    )
    assert mapping.columns == {
        "Mail": "email",
        "Vorname": "given_name",
        "Tier": "custom_attributes.loyalty_tier",
    }
    assert mapping.ignored == ("Notes", "Email")
    with pytest.raises(ImportFailed, match="names a column 'Nope'"):
        map_columns(["Email"], overrides={"Nope": "email"})
    with pytest.raises(ImportFailed, match="which is none of"):
        map_columns(["Email", "X"], overrides={"X": "shoe_size"})


def test_unknown_columns_are_kept_as_custom_attributes_only_when_asked() -> None:
    header = ["Email", "Lead Source", "2nd Contact", "Ünïcode Field"]
    assert map_columns(header).ignored == ("Lead Source", "2nd Contact", "Ünïcode Field")
    kept = map_columns(header, keep_unknown_columns=True)
    assert [key for key, _index in kept.custom] == ["Lead_Source", "_2nd_Contact", "n_code_Field"]
    data, problems = kept.profile_data(["a@example.com", "Web", "", "x"], date_format=None)
    assert problems == []
    assert data["custom_attributes"] == {"Lead_Source": "Web", "n_code_Field": "x"}
    with pytest.raises(ImportFailed, match="more than the 50"):
        map_columns(["Email", *[f"extra {n}" for n in range(51)]], keep_unknown_columns=True)


def test_row_to_profile() -> None:
    mapping = map_columns(SALESFORCE)
    cells = [
        " Alice ",
        "Liddell",
        "  Alice@Example.COM ",
        "",
        "07400 123456",
        "1990-05-04",
        "1 Wonder Lane\nFlat 2",
        "Oxford",
        "ox1 1aa",
        "United Kingdom",
        "Web",
    ]
    data, problems = mapping.profile_data(cells, date_format=None)
    assert problems == []
    profile = CustomerProfile.parse(data, phone_region="GB")
    assert profile.email_index == "alice@example.com"
    assert profile.phone == "+447400123456"  # the mobile, as the phone column is empty
    assert profile.postal_address is not None
    assert profile.postal_address.lines == ["1 Wonder Lane", "Flat 2"]
    assert profile.postal_address.country == "GB"
    assert profile.custom_attributes == {}


def test_dates_in_another_format_and_extra_cells() -> None:
    mapping = map_columns(["Email", "Birthdate"])
    data, problems = mapping.profile_data(["a@example.com", "04/05/1990"], date_format="%d/%m/%Y")
    assert (data["birth_date"], problems) == ("1990-05-04", [])
    data, problems = mapping.profile_data(["a@example.com", "1990-05-04"], date_format="%d/%m/%Y")
    assert problems == [("birth_date", "date_format")]
    assert "birth_date" not in data
    _data, problems = mapping.profile_data(["a@example.com", "", "surprise"], date_format=None)
    assert problems == [("row", "more_cells_than_columns")]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("gb", "GB"),
        ("United Kingdom", "GB"),
        ("UK", "GB"),
        ("united states", "US"),
        ("USA", "US"),
        ("Deutschland", "DE"),
        ("Germany", "DE"),
        ("France", "FR"),
        ("España", "ES"),
        ("C\u00f4te d\u2019Ivoire", "CI"),
        ("Atlantis", "Atlantis"),
    ],
)
def test_country_names(value: str, code: str) -> None:
    assert country_code(value) == code
