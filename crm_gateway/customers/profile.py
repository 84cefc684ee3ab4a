"""A customer's personal data: validation, normalisation and canonical form.

`CustomerProfile` is what the vault encrypts (its canonical JSON is sealed and committed to);
`ProfilePatch` is a PATCH body. Both refuse unknown fields, and every error names its field
(pydantic's `loc`), e.g. `("postal_address", "country")`.

Normalisation
-------------
* Text (names, address lines, city, region): NFC, trimmed, runs of white space collapsed to
  one space; control characters, line separators and bidirectional overrides are refused.
* `email`: validated by `email-validator` (syntax only, `check_deliverability=False`; no quoted
  local parts, no IP-literal domains) and stored in its normalised form (domain lower-cased, local
  part as given). The *index form* (`email_index`, `email_index_form()`) is that address
  trimmed and lower-cased as a whole: `'  Alice@Example.COM '` and `alice@example.com` are the
  same customer.
* `phone`: parsed by `phonenumbers`; a number without `+country` is read in the profile's own
  address country when it has one (`parse`: "(212) 424-1106" with country US is
  `+12124241106`), else in the default region (the `phone_region` key of the validation
  context, else `DEFAULT_PHONE_REGION`); it must be a valid number and is stored as E.164:
  `+44 20 7946 0958` and `020 7946 0958` (GB) are both `+442079460958`. Extensions are refused.
* `birth_date`: an ISO date `YYYY-MM-DD` (or a `date`), from 1900-01-01 to today (today
  anywhere on Earth, i.e. in UTC+14).
* `postal_address.country`: ISO 3166-1 alpha-2 (upper-cased; plus `XK`, Kosovo).
  `postcode`: upper-cased, letters, digits, spaces and hyphens.

Limits (characters after normalisation; the API answers 422 naming the field beyond them)
-----------------------------------------------------------------------------------------
==========================  ===========================================================
given_name, family_name     1-100
email                       254 (email-validator also caps the local part at 64)
phone                       32 as typed; E.164 has at most 15 digits
postal_address.lines        1-4 lines of 1-100
postal_address.city         1-100
postal_address.region       1-100 (optional)
postal_address.postcode     1-16 (optional)
postal_address.country      2 (ISO 3166-1 alpha-2)
birth_date                  1900-01-01 .. today
custom_attributes           at most 50 entries
  key                       1-64: a letter or `_`, then letters, digits, `_ . : -`
  string value              0-1000 (tabs and newlines allowed, other control characters not)
  integer value             |n| <= 2**53 - 1 (exact in every JSON implementation)
  float value               finite
==========================  ===========================================================

The limits are constants rather than settings on purpose: they are part of the API contract, and
a profile valid at one organisation's gateway must be valid at every other one's.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final, Self

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from crm_gateway.vault.commitment import canonical_json

NAME_MAX: Final = 100
EMAIL_MAX: Final = 254
PHONE_INPUT_MAX: Final = 32
ADDRESS_LINES_MAX: Final = 4
ADDRESS_LINE_MAX: Final = 100
CITY_MAX: Final = 100
REGION_MAX: Final = 100
POSTCODE_MAX: Final = 16
CUSTOM_ATTRIBUTES_MAX: Final = 50
CUSTOM_KEY_MAX: Final = 64
CUSTOM_STRING_MAX: Final = 1000
CUSTOM_INT_MAX: Final = 2**53 - 1
BIRTH_DATE_MIN: Final = date(1900, 1, 1)

#: Validation-context key overriding the default phone region, e.g. `{"phone_region": "FR"}`.
PHONE_REGION_CONTEXT: Final = "phone_region"

# ISO 3166-1 alpha-2 (all 249 officially assigned codes), plus XK (Kosovo, user-assigned but
# used by the EU, banks and libphonenumber).
_ISO_3166_ALPHA_2: Final = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
    BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
    GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
    KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
    MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
    TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM
    ZW XK
"""
COUNTRY_CODES: Final = frozenset(_ISO_3166_ALPHA_2.split())

_BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_WHITESPACE: Final = re.compile(r"\s+")
_POSTCODE: Final = re.compile(r"[A-Z0-9](?:[A-Z0-9 -]*[A-Z0-9])?", re.ASCII)
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_CUSTOM_KEY: Final = r"^[A-Za-z_][A-Za-z0-9_.:-]*$"


def _refuse_controls(value: str, allowed: str = "") -> None:
    for char in value:
        if char in allowed:
            continue
        if unicodedata.category(char) in {"Cc", "Cs", "Zl", "Zp"} or char in _BIDI_CONTROLS:
            raise ValueError(f"contains a control character (U+{ord(char):04X})")


def _clean_line(value: Any) -> Any:
    """NFC, trimmed, white space collapsed; non-strings are left for pydantic to refuse."""
    if not isinstance(value, str):
        return value
    value = unicodedata.normalize("NFC", value)
    _refuse_controls(value, allowed=" \t\n\r")
    return _WHITESPACE.sub(" ", value).strip()


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _email(value: str) -> str:
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid e-mail address: {exc}") from None
    normalized: str = result.normalized
    return normalized


def email_index_form(raw: str) -> str:
    """The form of an e-mail address that blind indexes and customer ids are computed over.

    Validates like `CustomerProfile.email`, then lower-cases the whole address; `ValueError`
    if it is not an e-mail address.
    """
    if not isinstance(raw, str) or len(raw.strip()) > EMAIL_MAX:
        raise ValueError("not a valid e-mail address")
    return _email(raw.strip()).lower()


def _region(info: ValidationInfo | None) -> str:
    context = info.context if info is not None else None
    if isinstance(context, Mapping) and context.get(PHONE_REGION_CONTEXT):
        return str(context[PHONE_REGION_CONTEXT]).upper()
    from crm_gateway.config import get_settings

    return get_settings().default_phone_region


def normalise_phone(raw: str, region: str) -> str:
    """A phone number in E.164; `ValueError` if it is not a valid number (region for national)."""
    try:
        number = phonenumbers.parse(raw, region.upper())
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from None
    if number.extension:
        raise ValueError("phone extensions are not supported")
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    e164: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164


def _phone(value: str, info: ValidationInfo) -> str:
    """E.164 of `value`; a national number is read in the profile's own address country (the
    address is declared, so validated, before the phone), else in the default region."""
    address = info.data.get("postal_address")
    country = getattr(address, "country", None)
    if country in phonenumbers.SUPPORTED_REGIONS:
        return normalise_phone(value, country)
    return normalise_phone(value, _region(info))


def _birth_date(value: Any) -> Any:
    if isinstance(value, datetime):
        raise ValueError("must be a date (YYYY-MM-DD), not a date and time")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError("not a calendar date") from None
    raise ValueError("must be an ISO date, YYYY-MM-DD")


def _birth_date_range(value: date) -> date:
    latest = (datetime.now(UTC) + timedelta(hours=14)).date()  # today somewhere on Earth
    if value > latest:
        raise ValueError("must not be in the future")
    if value < BIRTH_DATE_MIN:
        raise ValueError(f"must not be before {BIRTH_DATE_MIN.isoformat()}")
    return value


def _country(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    code = value.strip().upper()
    if code not in COUNTRY_CODES:
        raise ValueError("must be an ISO 3166-1 alpha-2 country code, e.g. GB")
    return code


def _postcode(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    code = _WHITESPACE.sub(" ", value).strip().upper()
    if code and _POSTCODE.fullmatch(code) is None:
        raise ValueError("may hold only letters, digits, spaces and hyphens")
    return code


def _custom_value(value: Any) -> str | int | float | bool:
    """One custom attribute value: a string, an integer, a finite float or a boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -CUSTOM_INT_MAX <= value <= CUSTOM_INT_MAX:
            raise ValueError(f"integers must lie within +/-{CUSTOM_INT_MAX}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value
    if isinstance(value, str):
        text = unicodedata.normalize("NFC", value)
        if len(text) > CUSTOM_STRING_MAX:
            raise ValueError(f"strings must be at most {CUSTOM_STRING_MAX} characters")
        _refuse_controls(text, allowed="\t\n")
        return text
    raise ValueError("must be a string, a number or a boolean")


# Constraints (`Field`) come first so they apply to the cleaned string, before validators.
Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX), BeforeValidator(_clean_line)]
Email = Annotated[
    str, Field(min_length=1, max_length=EMAIL_MAX), BeforeValidator(_strip), AfterValidator(_email)
]
Phone = Annotated[
    str,
    Field(min_length=1, max_length=PHONE_INPUT_MAX),
    BeforeValidator(_strip),
    AfterValidator(_phone),
]
BirthDate = Annotated[date, BeforeValidator(_birth_date), AfterValidator(_birth_date_range)]
AddressLine = Annotated[
    str, Field(min_length=1, max_length=ADDRESS_LINE_MAX), BeforeValidator(_clean_line)
]
CustomKey = Annotated[str, Field(min_length=1, max_length=CUSTOM_KEY_MAX, pattern=_CUSTOM_KEY)]
CustomValue = Annotated[
    str | int | float | bool,
    PlainValidator(_custom_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": CUSTOM_STRING_MAX},
                {"type": "integer", "minimum": -CUSTOM_INT_MAX, "maximum": CUSTOM_INT_MAX},
                {"type": "number"},
                {"type": "boolean"},
            ]
        }
    ),
]
CustomAttributes = Annotated[dict[CustomKey, CustomValue], Field(max_length=CUSTOM_ATTRIBUTES_MAX)]


class PostalAddress(BaseModel):
    """A structured postal address."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lines: Annotated[list[AddressLine], Field(min_length=1, max_length=ADDRESS_LINES_MAX)]
    city: Annotated[str, Field(min_length=1, max_length=CITY_MAX), BeforeValidator(_clean_line)]
    region: (
        Annotated[str, Field(min_length=1, max_length=REGION_MAX), BeforeValidator(_clean_line)]
        | None
    ) = None
    postcode: (
        Annotated[str, Field(min_length=1, max_length=POSTCODE_MAX), BeforeValidator(_postcode)]
        | None
    ) = None
    country: Annotated[str, Field(min_length=2, max_length=2), BeforeValidator(_country)]


class CustomerProfile(BaseModel):
    """A customer's personal data, validated and normalised (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    given_name: Name | None = None
    family_name: Name | None = None
    email: Email
    # Before the phone, whose national form is read in the address's country.
    postal_address: PostalAddress | None = None
    phone: Phone | None = None
    birth_date: BirthDate | None = None
    custom_attributes: CustomAttributes = Field(default_factory=dict)

    @property
    def email_index(self) -> str:
        """The e-mail in index form (whole address lower case) for blind indexes and ids."""
        return self.email.lower()

    def canonical_json(self) -> bytes:
        """The canonical JSON that is sealed and committed to (absent fields left out)."""
        return canonical_json(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def from_canonical(cls, canonical: bytes) -> Self:
        """The profile from its canonical JSON (as read back from the vault)."""
        return cls.model_validate(json.loads(canonical.decode("utf-8")))

    @classmethod
    def parse(cls, data: Any, *, phone_region: str | None = None) -> Self:
        """Validate `data` (a mapping); a national phone number is read in the address's country.

        Without an address country (or with one libphonenumber has no plan for), `phone_region`
        decides, and without that the DEFAULT_PHONE_REGION setting.
        """
        context = {PHONE_REGION_CONTEXT: phone_region} if phone_region else None
        return cls.model_validate(data, context=context)


class ProfilePatch(BaseModel):
    """A PATCH body: the fields given replace the stored ones; `null` removes an optional field.

    Fields replace whole values (a new `postal_address` or `custom_attributes` replaces the old
    one entirely); `email` cannot be removed. At least one field must be given.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    given_name: Name | None = None
    family_name: Name | None = None
    email: Email | None = None
    # Before the phone, whose national form is read in the address's country.
    postal_address: PostalAddress | None = None
    phone: Phone | None = None
    birth_date: BirthDate | None = None
    custom_attributes: CustomAttributes | None = None

    @field_validator("email")
    @classmethod
    def _email_stays(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("email cannot be removed")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("a patch must give at least one field")
        return self

    @classmethod
    def parse(cls, data: Any, *, phone_region: str | None = None) -> Self:
        context = {PHONE_REGION_CONTEXT: phone_region} if phone_region else None
        return cls.model_validate(data, context=context)

    def apply_to(self, profile: CustomerProfile) -> CustomerProfile:
        """The profile with this patch applied (validated again as a whole)."""
        data = profile.model_dump(mode="python", exclude_none=True)
        for name in self.model_fields_set:
            value = getattr(self, name)
            if value is None:
                data.pop(name, None)
            elif isinstance(value, BaseModel):
                data[name] = value.model_dump(mode="python", exclude_none=True)
            else:
                data[name] = value
        if "custom_attributes" not in data:
            data["custom_attributes"] = {}
        return CustomerProfile.model_validate(data)
