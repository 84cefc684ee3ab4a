"""Import customers from a CRM's CSV export: map, validate, deduplicate, seal, register in batches.

`crm-chaincode import FILE.csv` is a thin command over `CustomerImporter`; nothing here knows
about HTTP or the terminal.

Column mapping
--------------
The first non-blank record of the file is its header. A header is recognised whatever its case,
spacing and punctuation (`First Name`, `FirstName`, `first_name` and `FIRST-NAME` are the same):

==================  ========================================================================
profile field       recognised headers (the labels of Salesforce reports and Data Loader API names,
                    HubSpot, Microsoft Dynamics 365 and Zoho CRM exports, and common variants)
==================  ========================================================================
given_name          FirstName, First Name, given_name, forename
family_name         LastName, Last Name, family_name, surname
email (required)    Email, E-mail, email_address, Email Address
phone               Phone, Business Phone, Phone Number, telephone, tel; then, for a row whose
                    phone is empty, MobilePhone, Mobile, Mobile Phone, Mobile Phone Number, cell
birth_date          Birthdate, birth_date, Date of Birth, dob, birthday
postal_address      MailingStreet, Mailing Street, Street Address, Address 1: Street 1, street,
  .lines            address, address_line1 (a cell with several lines gives several address
                    lines), Address 1: Street 2 / 3, address_line2 .. address_line4
  .city             MailingCity, Mailing City, Address 1: City, City, town
  .region           MailingState, Mailing State/Province, State/Province, Address 1:
                    State/Province, State/Region, state, region, county, province
  .postcode         MailingPostalCode, Mailing Zip/Postal Code, Zip/Postal Code, Address 1:
                    ZIP/Postal Code, Mailing Zip, Postal Code, Zip Code, postcode, zip
  .country          MailingCountry, Mailing Country, Address 1: Country/Region, Country/Region,
                    country, country_code: an ISO 3166-1
                    alpha-2 code, or a country name (English and the main European languages,
                    plus UK, USA and a few other common forms)
==================  ========================================================================

Any other column is *unknown*: it is listed once in the report as ignored, or, with
`keep_unknown_columns`, kept in `custom_attributes` under the header turned into a key (characters
other than letters, digits and `_ . : -` become `_`). A mapping file (`--mapping mapping.json`)
overrides the recognition: a JSON object from header to a target, one of the profile fields above
(`given_name`, `family_name`, `email`, `phone`, `mobile_phone` (the fallback phone),
`birth_date`, `address_line1` .. `address_line4`, `city`, `region`, `postcode`, `country`),
`custom:<key>`, or `null` / `"ignore"`, e.g. `{"E-Mail Adresse": "email", "Notes": null}`.

Empty cells are absent fields. A row with more cells than the header is invalid; blank rows
(no cell with anything in it) are skipped and not counted. Birth dates must be ISO
(`YYYY-MM-DD`) unless a `date_format` (`strptime`, e.g. `%d/%m/%Y`) is given. Every row is then
validated exactly like `POST /v1/customers` (`CustomerProfile.parse`): a national phone number
is read in the row's own country (its address country) and, in a row without one, in the
default region (`--default-region`, else DEFAULT_PHONE_REGION); the limits are those of
`customers.profile`.

What happens to each row
------------------------
* invalid: it fails validation; reported with its line number and the names of the fields and
  columns at fault, never their values (no personal data in reports or logs).
* duplicate: its e-mail or phone (compared by blind index, so `' Alice@Example.COM '` and
  `alice@example.com`, or `+44 20 7946 0958` and `020 7946 0958`, are the same) belongs to an
  earlier row of the file (reported with that line) or to a customer this organisation already
  holds (reported with that customer id).
* already_imported: an earlier run of the same import (same file contents) already sealed it.
* erased: an earlier run of the same import brought the person in and they were erased since;
  they are not brought back.
* imported: sealed into the vault and registered on-chain.

How it is written
-----------------
Rows are read, validated and registered `batch_size` at a time (the file is never held in
memory). Each batch is one database transaction holding the sealed records, their blind indexes,
a CREATE access-log entry per customer (purpose `import:<tag>`, the tag being a keyed digest of
the file's contents) and one outbox row calling `CustomerRegistry.registerBatch(ids,
commitments)`; the pipeline then sends it (the caller runs the pipeline, see `PipelineWorker`).

An interrupted import (Ctrl-C, SIGKILL, a lost node) is finished by running it again on the same
file: outbox rows that were committed are sent first, rows already sealed are recognised by their
blind index and the `import:<tag>` entry of their record and counted as already_imported, and a
batch the chain refused is sent again for its already sealed rows. `registerBatch` itself skips ids
this organisation already holds, so nobody is registered twice. No extra table is needed: the
outbox, the vault and the access log together are the import's progress.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.chain.calls import call_many
from crm_gateway.chain.contracts import Contracts
from crm_gateway.customers.profile import (
    ADDRESS_LINES_MAX,
    CUSTOM_ATTRIBUTES_MAX,
    CUSTOM_KEY_MAX,
    CustomerProfile,
)
from crm_gateway.pipeline.outbox import ChainWrite
from crm_gateway.pipeline.sender import TRANSIENT_ERRORS
from crm_gateway.pipeline.worker import PipelineWorker
from crm_gateway.services.customers import REGISTRY, Actor, CustomerService, Registration
from crm_gateway.services.errors import ConflictError, DomainError
from crm_gateway.services.operations import OperationService
from crm_gateway.services.policy import IMPORT_POLICY
from crm_gateway.store import customers as store
from crm_gateway.store.models import BlindIndexKind, Operation, OperationStatus
from crm_gateway.vault.blind_index import BlindIndexer
from crm_gateway.vault.records import to_hex32

if TYPE_CHECKING:
    from crm_gateway.runtime import Runtime

#: The outbox kind of an import batch.
IMPORT_KIND: Final = "customers.import"
DEFAULT_BATCH_SIZE: Final = 100
#: Gas of one new customer in `registerBatch` (about 94k measured) with calldata and headroom.
GAS_PER_ITEM: Final = 100_000
#: Import batches allowed on their way to the chain before reading more of the file.
MAX_IN_FLIGHT: Final = 8
_SNIFF_DELIMITERS: Final = ",;\t|"
_UNSETTLED: Final = (OperationStatus.PENDING, OperationStatus.SUBMITTED)
_CUSTOM_KEY_BAD: Final = re.compile(r"[^A-Za-z0-9_.:-]+")
_LIST_INDEX: Final = re.compile(r"\.\d+(?=\.|$)")


class ImportFailed(DomainError):
    """The import cannot go on; what was committed stays, and running it again resumes."""

    status, slug, title = 422, "import-failed", "Import failed"


# --- column mapping ------------------------------------------------------------------------------

SINGLE_TARGETS: Final = (
    "given_name",
    "family_name",
    "email",
    "birth_date",
    "city",
    "region",
    "postcode",
    "country",
)
ADDRESS_LINE_TARGETS: Final = tuple(f"address_line{n}" for n in range(1, ADDRESS_LINES_MAX + 1))
PHONE_TARGETS: Final = ("phone", "mobile_phone")
TARGETS: Final = (*SINGLE_TARGETS, *PHONE_TARGETS, *ADDRESS_LINE_TARGETS)
_IGNORE: Final = "ignore"
_CUSTOM_PREFIX: Final = "custom:"

# Headers in normalised form (`_normalise_header`: case-folded, letters and digits only).
HEADER_ALIASES: Final[Mapping[str, str]] = {
    **dict.fromkeys(["firstname", "givenname", "forename"], "given_name"),
    **dict.fromkeys(["lastname", "familyname", "surname"], "family_name"),
    **dict.fromkeys(["email", "emailaddress", "primaryemail"], "email"),
    **dict.fromkeys(
        [
            "phone",
            "phonenumber",
            "telephone",
            "telephonenumber",
            "tel",
            "primaryphone",
            "businessphone",  # Salesforce's import label of Phone; Dynamics 365 (telephone1)
        ],
        "phone",
    ),
    **dict.fromkeys(
        [
            "mobilephone",
            "mobilephonenumber",
            "mobile",
            "mobilenumber",
            "cellphone",
            "cellphonenumber",
        ],
        "mobile_phone",
    ),
    **dict.fromkeys(["birthdate", "dateofbirth", "dob", "birthday"], "birth_date"),
    **dict.fromkeys(
        [
            "mailingstreet",
            "address1street1",  # Dynamics 365: "Address 1: Street 1"
            "street",
            "streetaddress",
            "address",
            "addressline1",
            "address1",
            "line1",
        ],
        "address_line1",
    ),
    **dict.fromkeys(
        ["addressline2", "address2", "line2", "streetaddress2", "address1street2"],
        "address_line2",
    ),
    **dict.fromkeys(["addressline3", "address3", "line3", "address1street3"], "address_line3"),
    **dict.fromkeys(["addressline4", "address4", "line4"], "address_line4"),
    **dict.fromkeys(["mailingcity", "address1city", "city", "town"], "city"),
    **dict.fromkeys(
        [
            "mailingstate",
            "mailingstatecode",
            "mailingstateprovince",  # Salesforce report label "Mailing State/Province"
            "address1stateprovince",  # Dynamics 365: "Address 1: State/Province"
            "state",
            "stateregion",
            "region",
            "county",
            "province",
            "stateprovince",
        ],
        "region",
    ),
    **dict.fromkeys(
        [
            "mailingpostalcode",
            "mailingzippostalcode",  # Salesforce report label "Mailing Zip/Postal Code"
            "zippostalcode",  # Salesforce Leads: "Zip/Postal Code"
            "address1zippostalcode",  # Dynamics 365: "Address 1: ZIP/Postal Code"
            "mailingzip",  # Zoho CRM Contacts: "Mailing Zip"
            "postalcode",
            "postcode",
            "zip",
            "zipcode",
        ],
        "postcode",
    ),
    **dict.fromkeys(
        [
            "mailingcountry",
            "mailingcountrycode",
            "address1countryregion",  # Dynamics 365: "Address 1: Country/Region"
            "country",
            "countryregion",
            "countrycode",
        ],
        "country",
    ),
}


def _normalise_header(header: str) -> str:
    return "".join(char for char in header.casefold() if char.isalnum())


def _custom_key(header: str) -> str:
    key = _CUSTOM_KEY_BAD.sub("_", header.strip()).strip("_") or "column"
    if not (key[0].isalpha() or key[0] == "_"):
        key = "_" + key
    return key[:CUSTOM_KEY_MAX]


@dataclass(frozen=True)
class ColumnMapping:
    """Which column feeds which profile field; built once from the header."""

    headers: tuple[str, ...]
    single: Mapping[str, int]
    phones: tuple[int, ...]
    address_lines: tuple[int, ...]
    custom: tuple[tuple[str, int], ...]
    ignored: tuple[str, ...]

    @property
    def columns(self) -> dict[str, str]:
        """Header -> what it feeds, for the report."""
        used: dict[str, str] = {}
        for target, index in self.single.items():
            used[self.headers[index]] = target
        for index in self.phones:
            used[self.headers[index]] = "phone"
        for number, index in enumerate(self.address_lines, start=1):
            used[self.headers[index]] = f"postal_address.lines ({number})"
        for key, index in self.custom:
            used[self.headers[index]] = f"custom_attributes.{key}"
        return used

    def column_of(self, field_path: str) -> str | None:
        """The header(s) behind a profile field path such as `postal_address.country`."""
        simple = field_path.removeprefix("postal_address.")
        if simple in self.single:
            return self.headers[self.single[simple]]
        if field_path == "phone" and self.phones:
            return ", ".join(self.headers[i] for i in self.phones)
        if field_path.startswith("postal_address.lines") and self.address_lines:
            return ", ".join(self.headers[i] for i in self.address_lines)
        if field_path.startswith("custom_attributes."):
            key = field_path.split(".")[1]
            for custom_key, index in self.custom:
                if custom_key == key:
                    return self.headers[index]
        if field_path == "postal_address":
            address = [self.single[t] for t in ("city", "region", "postcode", "country")]
            return ", ".join(
                self.headers[i] for i in sorted({*self.address_lines, *address} & set(self._all()))
            )
        return None

    def _all(self) -> set[int]:
        return {*self.single.values(), *self.phones, *self.address_lines}

    def profile_data(
        self, cells: Sequence[str], *, date_format: str | None
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """The profile fields of a row, and the (field, problem) pairs found on the way."""
        problems: list[tuple[str, str]] = []
        if len(cells) > len(self.headers) and any(c.strip() for c in cells[len(self.headers) :]):
            problems.append(("row", "more_cells_than_columns"))

        def cell(index: int) -> str | None:
            value = cells[index].strip() if index < len(cells) else ""
            return value or None

        data: dict[str, Any] = {}
        for target in ("given_name", "family_name", "email", "birth_date"):
            if target in self.single and (value := cell(self.single[target])) is not None:
                data[target] = value
        if date_format and "birth_date" in data:
            try:
                data["birth_date"] = (
                    datetime.strptime(data["birth_date"], date_format).date().isoformat()
                )
            except ValueError:
                problems.append(("birth_date", "date_format"))
                del data["birth_date"]
        phone = next((v for i in self.phones if (v := cell(i)) is not None), None)
        if phone is not None:
            data["phone"] = phone
        address: dict[str, Any] = {}
        lines = [
            part.strip()
            for i in self.address_lines
            if (value := cell(i)) is not None
            for part in value.splitlines()
            if part.strip()
        ]
        if lines:
            address["lines"] = lines
        for target in ("city", "region", "postcode", "country"):
            if target in self.single and (value := cell(self.single[target])) is not None:
                address[target] = country_code(value) if target == "country" else value
        if address:
            data["postal_address"] = address
        custom = {key: value for key, i in self.custom if (value := cell(i)) is not None}
        if custom:
            data["custom_attributes"] = custom
        return data, problems


def map_columns(
    header: Sequence[str],
    *,
    overrides: Mapping[str, str | None] | None = None,
    keep_unknown_columns: bool = False,
) -> ColumnMapping:
    """Recognise the columns of a header (see the module docstring); `ImportFailed` if unusable."""
    headers = tuple(h.strip() or f"column {n}" for n, h in enumerate(header, start=1))
    # A mapping names headers as written, in any case (not normalised: it must tell apart
    # the very columns that recognition confuses, such as Email and E-mail).
    wanted = {k.strip().casefold(): v for k, v in (overrides or {}).items()}
    present = {h.casefold() for h in headers}
    for name, override in (overrides or {}).items():
        if name.strip().casefold() not in present:
            raise ImportFailed(f"the mapping names a column {name!r} that the file does not have")
        if override is None or override == _IGNORE or override in TARGETS:
            continue
        if not override.startswith(_CUSTOM_PREFIX) or not override[len(_CUSTOM_PREFIX) :]:
            raise ImportFailed(
                f"the mapping sends {name!r} to {override!r}, which is none of "
                f"{', '.join(TARGETS)}, custom:<key> or null"
            )

    single: dict[str, int] = {}
    phones: dict[str, list[int]] = {"phone": [], "mobile_phone": []}
    lines: dict[int, int] = {}
    custom: list[tuple[str, int]] = []
    ignored: list[str] = []
    for index, name in enumerate(headers):
        key = _normalise_header(name)
        target: str | None
        if name.casefold() in wanted:
            target = wanted[name.casefold()] or _IGNORE
        elif key in HEADER_ALIASES:
            target = HEADER_ALIASES[key]
        else:
            target = f"{_CUSTOM_PREFIX}{_custom_key(name)}" if keep_unknown_columns else None
        if target is None or target == _IGNORE:
            ignored.append(name)
        elif target in phones:
            phones[target].append(index)
        elif target in ADDRESS_LINE_TARGETS:
            number = ADDRESS_LINE_TARGETS.index(target)
            if number in lines:
                raise _two_columns(headers[lines[number]], name, target)
            lines[number] = index
        elif target.startswith(_CUSTOM_PREFIX):
            custom_key = target[len(_CUSTOM_PREFIX) :]
            if any(k == custom_key for k, _ in custom):
                raise _two_columns(
                    next(headers[i] for k, i in custom if k == custom_key), name, target
                )
            custom.append((custom_key, index))
        else:
            if target in single:
                raise _two_columns(headers[single[target]], name, target)
            single[target] = index
    if "email" not in single:
        raise ImportFailed(
            "the file has no e-mail column (a header such as Email, E-mail or email_address); "
            "name it in a --mapping file"
        )
    if len(custom) > CUSTOM_ATTRIBUTES_MAX:
        raise ImportFailed(
            f"{len(custom)} unknown columns would be kept as custom attributes, more than the "
            f"{CUSTOM_ATTRIBUTES_MAX} a customer may have; ignore some with a --mapping file"
        )
    return ColumnMapping(
        headers=headers,
        single=single,
        phones=(*phones["phone"], *phones["mobile_phone"]),
        address_lines=tuple(lines[n] for n in sorted(lines)),
        custom=tuple(custom),
        ignored=tuple(ignored),
    )


def _two_columns(first: str, second: str, target: str) -> ImportFailed:
    return ImportFailed(
        f"columns {first!r} and {second!r} both map to {target}; choose one with a --mapping file"
    )


# --- country names -------------------------------------------------------------------------------

_COUNTRY_ALIASES: Final = {
    "uk": "GB",
    "greatbritain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northernireland": "GB",
    "usa": "US",
    "unitedstatesofamerica": "US",
    "america": "US",
    "uae": "AE",
    "holland": "NL",
    "thenetherlands": "NL",
    "southkorea": "KR",
    "russia": "RU",
    "czechia": "CZ",
    "czechrepublic": "CZ",
    "kosovo": "XK",
}
_NAME_LANGUAGES: Final = ("aa", "en", "de", "fr", "es", "it", "nl", "pt", "sv", "da", "pl")


def _name_key(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    return "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c))


@cache
def _country_names() -> dict[str, str]:
    """Country name (as `_name_key`) -> ISO code, from libphonenumber's region names."""
    try:
        from phonenumbers.geodata.locale import LOCALE_DATA
    except ImportError:  # pragma: no cover - phonenumbers always ships it
        return dict(_COUNTRY_ALIASES)
    names: dict[str, set[str]] = {}
    for code, by_language in LOCALE_DATA.items():
        if len(code) != 2:
            continue
        for language in _NAME_LANGUAGES:
            name = by_language.get(language)
            while name is not None and name.startswith("*"):
                name = by_language.get(name[1:])
            if name:
                names.setdefault(_name_key(name), set()).add(code)
    table = {name: codes.pop() for name, codes in names.items() if len(codes) == 1}
    table.update(_COUNTRY_ALIASES)
    return table


def country_code(value: str) -> str:
    """An ISO 3166-1 alpha-2 code for a code or a country name; anything else unchanged."""
    stripped = value.strip()
    default = stripped.upper() if len(stripped) == 2 else stripped
    return _country_names().get(_name_key(stripped), default)


# --- the file ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportOptions:
    batch_size: int = DEFAULT_BATCH_SIZE
    dry_run: bool = False
    keep_unknown_columns: bool = False
    mapping: Mapping[str, str | None] | None = None
    encoding: str = "utf-8-sig"
    delimiter: str | None = None  # None: the most frequent of , ; TAB | in the header line
    date_format: str | None = None
    #: Region of national phone numbers in rows without an address country (None: the setting).
    phone_region: str | None = None


class CsvSource:
    """A CSV file read as a stream of (line number, cells), after its header."""

    def __init__(self, path: Path, *, encoding: str, delimiter: str | None) -> None:
        self.path = path
        self.encoding = encoding
        try:
            with path.open(encoding=encoding, newline="") as handle:
                first_line = handle.readline()
        except (OSError, LookupError, UnicodeDecodeError) as exc:
            raise self._unreadable(exc, 1) from exc
        self.delimiter = delimiter or max(_SNIFF_DELIMITERS, key=first_line.count)
        if first_line.count(self.delimiter) == 0 and delimiter is None:
            self.delimiter = ","

    def _unreadable(self, exc: BaseException, line: int) -> ImportFailed:
        if isinstance(exc, UnicodeDecodeError):
            return ImportFailed(
                f"{self.path.name} is not {self.encoding} text (near line {line}); "
                "pass --encoding, e.g. cp1252"
            )
        if isinstance(exc, LookupError):
            return ImportFailed(f"unknown encoding {self.encoding}")
        if isinstance(exc, csv.Error):
            return ImportFailed(f"{self.path.name} line {line} is not valid CSV: {exc}")
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return ImportFailed(f"cannot read {self.path}: {reason}")

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """Every non-blank record with the line it starts on, the header first."""
        line = 1
        try:
            with self.path.open(encoding=self.encoding, newline="") as handle:
                reader = csv.reader(handle, delimiter=self.delimiter)
                while True:
                    line = reader.line_num + 1
                    try:
                        cells = next(reader)
                    except StopIteration:
                        return
                    if any(cell.strip() for cell in cells):
                        yield line, cells
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise self._unreadable(exc, line) from exc

    def digest(self) -> bytes:
        """SHA-256 of the file's bytes."""
        sha = hashlib.sha256()
        try:
            with self.path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    sha.update(block)
        except OSError as exc:
            raise self._unreadable(exc, 1) from exc
        return sha.digest()


# --- report --------------------------------------------------------------------------------------


@dataclass
class Counts:
    rows: int = 0
    imported: int = 0
    already_imported: int = 0
    duplicate: int = 0
    invalid: int = 0
    erased: int = 0


@dataclass
class ImportReport:
    """What an import did, with line numbers and never a value from the file."""

    file: str
    tag: str
    organisation: int
    account: str
    dry_run: bool
    batch_size: int
    columns: dict[str, str]
    ignored_columns: list[str]
    counts: Counts = field(default_factory=Counts)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    already_imported: list[int] = field(default_factory=list)
    erased: list[int] = field(default_factory=list)
    on_chain: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ["batches", "registered", "joined", "skipped", "sent_again"], 0
        )
    )
    operations: list[str] = field(default_factory=list)
    completed: bool = False
    error: str | None = None
    elapsed_seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return round(self.counts.rows / self.elapsed_seconds, 1) if self.elapsed_seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "import_tag": self.tag,
            "organisation": self.organisation,
            "account": self.account,
            "dry_run": self.dry_run,
            "batch_size": self.batch_size,
            "completed": self.completed,
            "error": self.error,
            "counts": vars(self.counts).copy(),
            "columns": self.columns,
            "ignored_columns": self.ignored_columns,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "already_imported": self.already_imported,
            "erased": self.erased,
            "on_chain": self.on_chain,
            "operations": self.operations,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "rows_per_second": self.rows_per_second,
        }


# --- the import ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    line: int
    profile: CustomerProfile
    email: str  # blind index
    phone: str | None  # blind index

    @property
    def indexes(self) -> dict[BlindIndexKind, str | None]:
        return {BlindIndexKind.EMAIL: self.email, BlindIndexKind.PHONE: self.phone}


@dataclass
class _Sorted:
    """One batch of valid rows, sorted against the file so far and this organisation's records."""

    new: list[_Row] = field(default_factory=list)
    already: list[tuple[_Row, str]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    seen_email: dict[bytes, int] = field(default_factory=dict)
    seen_phone: dict[bytes, int] = field(default_factory=dict)


class _Raced(Exception):
    """Another writer registered one of the batch's people meanwhile; sort the batch again."""


ProgressCallback = Callable[[int, int, Counts], None]


class CustomerImporter:
    """Imports CSV files into this organisation's vault and the CustomerRegistry."""

    def __init__(
        self,
        *,
        customers: CustomerService,
        operations: OperationService,
        pipeline: PipelineWorker,
        sessions: sessionmaker[Session],
        contracts: Contracts,
        indexer: BlindIndexer,
        org_id: int,
        phone_region: str,
        wait_timeout_seconds: float,
        gas_limit_multiplier: float,
    ) -> None:
        self.customers = customers
        self.sessions = sessions
        self._operations = operations
        self._pipeline = pipeline
        self._contracts = contracts
        self._indexer = indexer
        self._org_id = org_id
        self._phone_region = phone_region
        self._wait_timeout = wait_timeout_seconds
        self._gas_multiplier = gas_limit_multiplier
        self._background = False  # the pipeline runs in threads started here

    def prepare(self, path: Path, actor: Actor, options: ImportOptions) -> ImportJob:
        """Read the header and map the columns; `ImportFailed` if the file cannot be imported."""
        if options.batch_size < 1:
            raise ImportFailed("the batch size must be at least 1")
        source = CsvSource(path, encoding=options.encoding, delimiter=options.delimiter)
        records = source.records()
        first = next(records, None)
        if first is None:
            raise ImportFailed(f"{path.name} is empty")
        mapping = map_columns(
            first[1],
            overrides=options.mapping,
            keep_unknown_columns=options.keep_unknown_columns,
        )
        total = sum(1 for _ in records)
        tag = "import:" + self._indexer.request_digest(source.digest())[:32]
        report = ImportReport(
            file=str(path),
            tag=tag,
            organisation=self._org_id,
            account=actor.account,
            dry_run=options.dry_run,
            batch_size=options.batch_size,
            columns=mapping.columns,
            ignored_columns=list(mapping.ignored),
        )
        return ImportJob(self, source, mapping, actor, options, total, report)

    # --- steps used by ImportJob ------------------------------------------------------------

    def check_batch_size(self, batch_size: int) -> None:
        block = self._contracts.chain.w3.eth.get_block("latest")
        limit = int(block["gasLimit"])
        per_item = int(GAS_PER_ITEM * self._gas_multiplier)
        if batch_size * per_item > limit:
            raise ImportFailed(
                f"a batch of {batch_size} needs about {batch_size * per_item:,} gas, more than "
                f"the block gas limit of {limit:,}; use --batch-size {max(limit // per_item, 1)} "
                "or less"
            )

    def unsettled(self, operation_ids: Sequence[str] | None = None) -> list[Operation]:
        """Import batches not yet confirmed or failed (of `operation_ids`, or all)."""
        query = select(Operation).where(
            Operation.kind == IMPORT_KIND, Operation.status.in_(_UNSETTLED)
        )
        if operation_ids is not None:
            if not operation_ids:
                return []
            query = query.where(Operation.id.in_(operation_ids))
        with self.sessions() as session:
            return list(session.scalars(query))

    def settled(self, operation_ids: Sequence[str]) -> list[Operation]:
        if not operation_ids:
            return []
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(Operation).where(
                        Operation.id.in_(operation_ids), Operation.status.not_in(_UNSETTLED)
                    )
                )
            )

    def start_pipeline(self) -> None:
        """Run the pipeline's watcher in a background thread from now on: receipts are read and
        batches settled while the next rows are read, checked and sealed, rather than in rounds
        (with a pause each) whenever too many batches are in flight. Batches are still sent
        here, by `send`, as soon as they are committed."""
        if not self._pipeline.running:
            self._pipeline.start(sender=False)
            self._background = True

    def stop_pipeline(self) -> None:
        if self._background:
            self._pipeline.stop()
            self._background = False

    def pump(self, until: Callable[[], bool], what: str) -> None:
        """Run the pipeline (here, or wait for its threads) until `until()`; `ImportFailed` if
        the chain does not follow."""
        if self._background:
            deadline = time.monotonic() + self._wait_timeout
            while not until():
                if time.monotonic() > deadline:
                    break
                self._pipeline.sender.run_once()
                time.sleep(0.01)
            else:
                return
        elif self._pipeline.drain(until=until, timeout=self._wait_timeout):
            return
        raise ImportFailed(
            f"the chain did not confirm {what} within {self._wait_timeout:g}s (is the node "
            "running?); run the import again to finish it"
        )

    def send(self) -> None:
        """One turn of the pipeline's sender: what is committed goes to the chain now."""
        self._pipeline.sender.run_once()

    def failed_batch_ids(self) -> set[str]:
        """Customer ids carried by import batches that failed (their rows are sealed here)."""
        with self.sessions() as session:
            args: Iterable[list[Any]] = session.scalars(
                select(Operation.args).where(
                    Operation.kind == IMPORT_KIND, Operation.status == OperationStatus.FAILED
                )
            )
            return {str(customer_id) for item in args for customer_id in item[0]}

    def not_held(self, customer_ids: Sequence[str]) -> list[str]:
        """Those of `customer_ids` that this organisation does not hold on-chain."""
        held = call_many(
            self._contracts.chain.w3,
            self._contracts[REGISTRY],
            "isHolder",
            [(bytes.fromhex(cid[2:]), self._org_id) for cid in customer_ids],
        )
        return [cid for cid, (is_held,) in zip(customer_ids, held, strict=True) if not is_held]

    def parse(
        self, mapping: ColumnMapping, line: int, cells: Sequence[str], options: ImportOptions
    ) -> _Row | dict[str, Any]:
        """A valid row, or the invalid-row entry for the report (field names only)."""
        data, problems = mapping.profile_data(cells, date_format=options.date_format)
        profile: CustomerProfile | None = None
        try:
            profile = CustomerProfile.parse(
                data, phone_region=options.phone_region or self._phone_region
            )
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_context=False, include_input=False):
                path = ".".join(str(part) for part in error["loc"])
                problems.append((_LIST_INDEX.sub("", path), str(error["type"])))
        if problems or profile is None:
            fields = list(dict.fromkeys(name for name, _ in problems))
            columns = [c for name in fields if (c := mapping.column_of(name)) is not None]
            return {
                "line": line,
                "fields": fields,
                "columns": list(dict.fromkeys(columns)),
                "errors": list(dict.fromkeys(f"{name}: {kind}" for name, kind in problems)),
            }
        indexes = self.customers.blind_indexes(profile)
        return _Row(
            line=line,
            profile=profile,
            email=str(indexes[BlindIndexKind.EMAIL]),
            phone=indexes[BlindIndexKind.PHONE],
        )

    def sort(
        self,
        rows: Sequence[_Row],
        tag: str,
        seen_email: Mapping[bytes, int],
        seen_phone: Mapping[bytes, int],
    ) -> _Sorted:
        """New, already imported or duplicate, for each row (in file order)."""
        with self.sessions() as session:
            email_owners = store.owners_by_blind_index(
                session, BlindIndexKind.EMAIL, [row.email for row in rows]
            )
            phone_owners = store.owners_by_blind_index(
                session, BlindIndexKind.PHONE, [row.phone for row in rows if row.phone]
            )
            owners = {*email_owners.values(), *phone_owners.values()}
            mine = store.created_with_purpose(session, owners, tag) if owners else set()
        result = _Sorted()
        for row in rows:
            email = bytes.fromhex(row.email)
            phone = bytes.fromhex(row.phone) if row.phone else None
            earlier = seen_email.get(email) or result.seen_email.get(email)
            by = "email"
            if earlier is None and phone is not None:
                earlier = seen_phone.get(phone) or result.seen_phone.get(phone)
                by = "phone"
            if earlier is not None:
                result.duplicates.append({"line": row.line, "of_line": earlier, "by": by})
                continue
            owner = email_owners.get(row.email)
            if owner is not None and owner in mine:
                result.already.append((row, owner))
            elif owner is not None:
                result.duplicates.append({"line": row.line, "of_customer": owner, "by": "email"})
                continue
            elif row.phone and (owner := phone_owners.get(row.phone)) is not None:
                result.duplicates.append({"line": row.line, "of_customer": owner, "by": "phone"})
                continue
            else:
                result.new.append(row)
            result.seen_email[email] = row.line
            if phone is not None:
                result.seen_phone[phone] = row.line
        return result

    def erased_since(self, rows: Sequence[_Row], chosen: Sequence[bytes], tag: str) -> set[int]:
        """Lines of rows whose person this import brought in before and who was erased since.

        The earlier generations of the free id are checked, and the free id itself: it may be
        this organisation's erased record of a person other organisations still hold, whom a
        new registration would bring back (`CustomerService.free_customer_ids`).
        """
        earlier: dict[str, int] = {}
        for row, customer_id in zip(rows, chosen, strict=True):
            email = row.profile.email_index
            for generation in range(64):
                candidate = self._indexer.customer_id(email, generation)
                earlier[to_hex32(candidate)] = row.line
                if candidate == customer_id:
                    break
        if not earlier:
            return set()
        with self.sessions() as session:
            found = store.created_with_purpose(session, list(earlier), tag)
        return {earlier[customer_id] for customer_id in found}

    def submit_batch(
        self,
        actor: Actor,
        tag: str,
        registrations: Sequence[Registration],
        again: Mapping[str, str],
        lines: tuple[int, int],
    ) -> str:
        """Commit the batch's records with the outbox row of its `registerBatch`; the op id."""
        ids = [r.customer_id for r in registrations] + list(again)
        commitments = [r.commitment for r in registrations] + list(again.values())
        write = ChainWrite(
            IMPORT_KIND, REGISTRY, "registerBatch", [ids, commitments], actor.account
        )
        indexes: dict[BlindIndexKind, list[str]] = {kind: [] for kind in BlindIndexKind}
        for registration in registrations:
            for kind, value in registration.indexes.items():
                if value is not None:
                    indexes[kind].append(value)

        def off_chain(session: Session) -> None:
            for kind, values in indexes.items():
                if values and store.owners_by_blind_index(session, kind, values):
                    raise _Raced
            if registrations:
                self.customers.write_registrations(session, actor, registrations, purpose=tag)

        try:
            view, _created = self._operations.submit(
                write,
                api_key_id=None,
                idempotency_key=None,
                payload={"import": tag, "lines": list(lines)},
                off_chain=off_chain,
            )
        except (IntegrityError, ConflictError) as exc:
            raise _Raced from exc
        return view.id


class ImportJob:
    """One run of an import over one file; `report` tells where it stands, even after a failure."""

    def __init__(
        self,
        importer: CustomerImporter,
        source: CsvSource,
        mapping: ColumnMapping,
        actor: Actor,
        options: ImportOptions,
        total: int,
        report: ImportReport,
    ) -> None:
        self._importer = importer
        self._source = source
        self.mapping = mapping
        self._actor = actor
        self._options = options
        self.total = total
        self.report = report
        self._seen_email: dict[bytes, int] = {}
        self._seen_phone: dict[bytes, int] = {}
        self._in_flight: list[str] = []
        self._again: set[str] = set()

    def run(self, on_progress: ProgressCallback | None = None) -> ImportReport:
        """Import every row; `ImportFailed` on a fatal problem (the report is kept up to date)."""
        started = time.monotonic()
        importer, options, report = self._importer, self._options, self.report
        try:
            if not options.dry_run:
                importer.customers.authorise_create(self._actor)
                importer.check_batch_size(options.batch_size)
                # Batches committed by an interrupted run go out first.
                importer.pump(
                    lambda: not importer.unsettled(), "the batches left by an earlier run"
                )
                self._again = importer.failed_batch_ids()
                importer.start_pipeline()
            processed = 0
            records = self._source.records()
            next(records)  # the header
            while chunk := list(itertools.islice(records, options.batch_size)):
                self._import_chunk(chunk)
                processed += len(chunk)
                report.elapsed_seconds = time.monotonic() - started
                if on_progress is not None:
                    on_progress(processed, self.total, report.counts)
            if not options.dry_run:
                self._importer.pump(self._all_settled, "the last import batches")
            report.completed = True
            return report
        except ImportFailed as exc:
            report.error = exc.detail
            raise
        except TRANSIENT_ERRORS as exc:
            report.error = (
                f"the chain became unreachable ({type(exc).__name__}); "
                "run the import again to finish it"
            )
            raise ImportFailed(report.error) from exc
        finally:
            importer.stop_pipeline()
            report.elapsed_seconds = time.monotonic() - started

    def _import_chunk(self, chunk: Sequence[tuple[int, list[str]]]) -> None:
        importer, report = self._importer, self.report
        rows: list[_Row] = []
        for line, cells in chunk:
            parsed = importer.parse(self.mapping, line, cells, self._options)
            if isinstance(parsed, _Row):
                rows.append(parsed)
            else:
                report.invalid.append(parsed)
                report.counts.invalid += 1
        report.counts.rows += len(chunk)
        for _attempt in range(5):
            try:
                self._register(rows)
                return
            except _Raced:
                continue
        raise ImportFailed(
            "other writers keep registering the same people as this import; run it again later"
        )

    def _register(self, rows: Sequence[_Row]) -> None:
        importer, report, tag = self._importer, self.report, self.report.tag
        result = importer.sort(rows, tag, self._seen_email, self._seen_phone)
        new = list(result.new)
        registrations: list[Registration] = []
        erased: set[int] = set()
        again: dict[str, str] = {}
        if not self._options.dry_run:
            if new:
                chosen = importer.customers.free_customer_ids(
                    [row.profile.email_index for row in new]
                )
                erased = importer.erased_since(new, chosen, tag)
                registrations = [
                    importer.customers.prepare_registration(
                        row.profile, indexes=row.indexes, customer_id=customer_id
                    )
                    for row, customer_id in zip(new, chosen, strict=True)
                    if row.line not in erased
                ]
            retry = [owner for _row, owner in result.already if owner in self._again]
            if retry:
                with importer.sessions() as session:
                    commitments = store.commitments_of(session, retry)
                again = {
                    cid: commitments[cid]
                    for cid in importer.not_held([c for c in retry if c in commitments])
                }
            if registrations or again:
                lines = (rows[0].line, rows[-1].line)
                operation_id = importer.submit_batch(self._actor, tag, registrations, again, lines)
                self._in_flight.append(operation_id)
                report.operations.append(operation_id)
                report.on_chain["batches"] += 1
                report.on_chain["sent_again"] += len(again)
        # Committed: account for the batch.
        self._seen_email.update(result.seen_email)
        self._seen_phone.update(result.seen_phone)
        report.duplicates.extend(result.duplicates)
        report.counts.duplicate += len(result.duplicates)
        report.already_imported.extend(row.line for row, _owner in result.already)
        report.counts.already_imported += len(result.already)
        report.erased.extend(sorted(erased))
        report.counts.erased += len(erased)
        report.counts.imported += len(new) - len(erased)
        if not self._options.dry_run:
            self._wait(MAX_IN_FLIGHT)

    def _wait(self, in_flight: int) -> None:
        """Send what is committed; while more than `in_flight` of this run's batches are
        unsettled, run the whole pipeline (sender and watcher) until they are no more.

        The watcher re-reads every receipt that is not final yet each time it runs, so it runs
        once per few batches rather than once per batch; reading the file never gets more than
        `in_flight` batches ahead of the chain.
        """

        def enough() -> bool:
            self._collect()
            return len(self._in_flight) <= in_flight

        if len(self._in_flight) <= in_flight:
            self._importer.send()
        else:
            self._importer.pump(enough, f"{len(self._in_flight)} import batches")

    def _all_settled(self) -> bool:
        self._collect()
        return not self._in_flight

    def _collect(self) -> None:
        """Account for batches that settled; `ImportFailed` for one the chain refused."""
        for operation in self._importer.settled(self._in_flight):
            self._in_flight.remove(operation.id)
            if operation.status is OperationStatus.FAILED:
                raise ImportFailed(
                    f"the chain refused an import batch ({operation.error_name}); its rows stay "
                    "sealed here and are sent again when you run the import again"
                )
            for event in (operation.result or {}).get("events", []):
                name = event.get("event")
                if name == "CustomerRegistered":
                    self.report.on_chain["registered"] += 1
                elif name == "HolderJoined":
                    self.report.on_chain["joined"] += 1
                elif name == "RegistrationSkipped":
                    self.report.on_chain["skipped"] += 1


def importer_for(runtime: Runtime) -> CustomerImporter:
    """The importer of the gateway's organisation, built on a runtime (CLI, tests)."""
    settings = runtime.settings
    operations = OperationService(runtime.session_factory, runtime.pipeline)
    customers = CustomerService(
        sessions=runtime.session_factory,
        contracts=runtime.contracts,
        operations=operations,
        vault=runtime.vault,
        indexer=runtime.indexer,
        gateway_org_id=settings.gateway_org_id,
        phone_region=settings.default_phone_region,
        signature_ttl_seconds=settings.signature_ttl_seconds,
        consent=IMPORT_POLICY,
    )
    return CustomerImporter(
        customers=customers,
        operations=operations,
        pipeline=runtime.pipeline,
        sessions=runtime.session_factory,
        contracts=runtime.contracts,
        indexer=runtime.indexer,
        org_id=settings.gateway_org_id,
        phone_region=settings.default_phone_region,
        wait_timeout_seconds=settings.wait_timeout_seconds,
        gas_limit_multiplier=settings.gas_limit_multiplier,
    )
