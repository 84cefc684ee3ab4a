"""Real CRM exports: each vendor's header line; national phone numbers read in the row's country.

The header lines are those the vendors' own exports write (Salesforce Lightning contact and lead
reports and Data Loader, HubSpot's contact export, Microsoft Dynamics 365 "Export to Excel" of
contacts, Zoho CRM's contact and lead exports), system columns included: every personal column
must be recognised, and only columns that carry no profile field may be left over as ignored.
"""

from __future__ import annotations

import pytest

from crm_gateway.customers.profile import CustomerProfile
from crm_gateway.services.importer import map_columns

SALESFORCE_CONTACTS_REPORT = (
    "Contact ID,Salutation,First Name,Last Name,Title,Account Name,Mailing Street,Mailing City,"
    "Mailing State/Province,Mailing Zip/Postal Code,Mailing Country,Phone,Mobile,Email,"
    "Birthdate,Lead Source,Contact Owner"
)
SALESFORCE_LEADS_REPORT = (
    "Lead ID,First Name,Last Name,Company / Account,Street,City,State/Province,Zip/Postal Code,"
    "Country,Phone,Mobile,Email,Lead Status,Lead Source"
)
SALESFORCE_DATA_LOADER = (
    "Id,FirstName,LastName,AccountId,MailingStreet,MailingCity,MailingState,MailingPostalCode,"
    "MailingCountry,Phone,MobilePhone,Email,Birthdate,LeadSource,OwnerId"
)
HUBSPOT_CONTACTS = (
    "Record ID,First Name,Last Name,Email,Phone Number,Mobile Phone Number,Street Address,City,"
    "State/Region,Postal Code,Country/Region,Date of birth,Contact owner,Lifecycle Stage,"
    "Create Date"
)
DYNAMICS_365_CONTACTS = (
    "(Do Not Modify) Contact,(Do Not Modify) Row Checksum,(Do Not Modify) Modified On,"
    "Full Name,First Name,Last Name,Email,Business Phone,Mobile Phone,Address 1: Street 1,"
    "Address 1: Street 2,Address 1: Street 3,Address 1: City,Address 1: State/Province,"
    "Address 1: ZIP/Postal Code,Address 1: Country/Region,Birthday,Company Name"
)
ZOHO_CONTACTS = (
    "Record Id,Contact Owner,Salutation,First Name,Last Name,Account Name,Email,Phone,Mobile,"
    "Mailing Street,Mailing City,Mailing State,Mailing Zip,Mailing Country,Date of Birth,"
    "Lead Source,Created Time"
)
ZOHO_LEADS = (
    "Record Id,Lead Owner,First Name,Last Name,Company,Email,Phone,Mobile,Street,City,State,"
    "Zip Code,Country,Lead Status,Lead Source"
)

EXPORTS = {
    "salesforce contacts report": (
        SALESFORCE_CONTACTS_REPORT,
        {
            "First Name": "given_name",
            "Last Name": "family_name",
            "Email": "email",
            "Phone": "phone",
            "Mobile": "phone",
            "Birthdate": "birth_date",
            "Mailing Street": "postal_address.lines (1)",
            "Mailing City": "city",
            "Mailing State/Province": "region",
            "Mailing Zip/Postal Code": "postcode",
            "Mailing Country": "country",
        },
    ),
    "salesforce leads report": (
        SALESFORCE_LEADS_REPORT,
        {
            "First Name": "given_name",
            "Last Name": "family_name",
            "Email": "email",
            "Phone": "phone",
            "Mobile": "phone",
            "Street": "postal_address.lines (1)",
            "City": "city",
            "State/Province": "region",
            "Zip/Postal Code": "postcode",
            "Country": "country",
        },
    ),
    "salesforce data loader": (
        SALESFORCE_DATA_LOADER,
        {
            "FirstName": "given_name",
            "LastName": "family_name",
            "Email": "email",
            "Phone": "phone",
            "MobilePhone": "phone",
            "Birthdate": "birth_date",
            "MailingStreet": "postal_address.lines (1)",
            "MailingCity": "city",
            "MailingState": "region",
            "MailingPostalCode": "postcode",
            "MailingCountry": "country",
        },
    ),
    "hubspot contacts": (
        HUBSPOT_CONTACTS,
        {
            "First Name": "given_name",
            "Last Name": "family_name",
            "Email": "email",
            "Phone Number": "phone",
            "Mobile Phone Number": "phone",
            "Date of birth": "birth_date",
            "Street Address": "postal_address.lines (1)",
            "City": "city",
            "State/Region": "region",
            "Postal Code": "postcode",
            "Country/Region": "country",
        },
    ),
    "dynamics 365 contacts": (
        DYNAMICS_365_CONTACTS,
        {
            "First Name": "given_name",
            "Last Name": "family_name",
            "Email": "email",
            "Business Phone": "phone",
            "Mobile Phone": "phone",
            "Birthday": "birth_date",
            "Address 1: Street 1": "postal_address.lines (1)",
            "Address 1: Street 2": "postal_address.lines (2)",
            "Address 1: Street 3": "postal_address.lines (3)",
            "Address 1: City": "city",
            "Address 1: State/Province": "region",
            "Address 1: ZIP/Postal Code": "postcode",
            "Address 1: Country/Region": "country",
        },
    ),
    "zoho contacts": (
        ZOHO_CONTACTS,
        {
            "First Name": "given_name",
            "Last Name": "family_name",
            "Email": "email",
            "Phone": "phone",
            "Mobile": "phone",
            "Date of Birth": "birth_date",
            "Mailing Street": "postal_address.lines (1)",
            "Mailing City": "city",
            "Mailing State": "region",
            "Mailing Zip": "postcode",
            "Mailing Country": "country",
        },
    ),
    "zoho leads": (
        ZOHO_LEADS,
        {
            "First Name": "given_name",
            "Last Name": "family_name",
            "Email": "email",
            "Phone": "phone",
            "Mobile": "phone",
            "Street": "postal_address.lines (1)",
            "City": "city",
            "State": "region",
            "Zip Code": "postcode",
            "Country": "country",
        },
    ),
}


@pytest.mark.parametrize("vendor", sorted(EXPORTS))
def test_every_personal_column_of_a_vendor_export_is_recognised(vendor: str) -> None:
    line, expected = EXPORTS[vendor]
    header = line.split(",")
    mapping = map_columns(header)
    assert mapping.columns == expected
    assert set(mapping.ignored) == set(header) - set(expected)


@pytest.mark.parametrize(
    ("phone", "country", "e164"),
    [
        ("(212) 424-1106", "US", "+12124241106"),
        ("212-424-1106", "us", "+12124241106"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("01 42 68 53 00", "FR", "+33142685300"),
        ("+44 20 7946 0958", "US", "+442079460958"),  # an international form wins
    ],
)
def test_a_national_number_is_read_in_the_address_country(
    phone: str, country: str, e164: str
) -> None:
    address = {"lines": ["1 Main Street"], "city": "Somewhere", "country": country}
    profile = CustomerProfile.parse(
        {"email": "a@example.org", "phone": phone, "postal_address": address}, phone_region="DE"
    )
    assert profile.phone == e164


def test_without_an_address_country_the_default_region_decides() -> None:
    data = {"email": "a@example.org", "phone": "(212) 424-1106"}
    assert CustomerProfile.parse(data, phone_region="US").phone == "+12124241106"
    with pytest.raises(ValueError, match="phone"):
        CustomerProfile.parse(data, phone_region="GB")
