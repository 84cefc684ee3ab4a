"""A CRM export with known duplicates and invalid rows, and what an import of it must report.

`generate(path, rows)` writes a Salesforce-style CSV: 5% of the rows duplicate an earlier row
(the same e-mail in another case and with spaces around it, the same e-mail exactly, or another
e-mail with the same phone written differently) and 2% are invalid (a bad e-mail, phone or birth
date, or a name over the 100-character limit). Some streets span two lines inside quotes, so
line numbers are not row numbers. The returned `Expected` says, by line, what the report must say.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers

HEADER = [
    "FirstName",
    "LastName",
    "Email",
    "Phone",
    "MobilePhone",
    "Birthdate",
    "MailingStreet",
    "MailingCity",
    "MailingPostalCode",
    "MailingCountry",
    "LeadSource",
]
GIVEN = ["Alice", "Bruno", "Chloé", "Dmitri", "Eilidh", "Farah", "Goran", "Hana", "Iker", "Jun"]
FAMILY = ["Liddell", "Okafor", "Nakamura", "Müller", "O'Brien", "Silva", "Kowalski", "Haddad"]
CITIES = ["London", "Leeds", "Bristol", "Glasgow", "Cardiff"]


@dataclass
class Person:
    line: int
    email: str  # as written in the file (trimmed, mixed case)
    phone_e164: str


@dataclass
class Expected:
    rows: int = 0
    people: list[Person] = field(default_factory=list)  # the rows that must be imported
    duplicates: dict[int, int] = field(default_factory=dict)  # line -> line it duplicates
    duplicate_by: dict[int, str] = field(default_factory=dict)  # line -> "email" / "phone"
    invalid: dict[int, str] = field(default_factory=dict)  # line -> the field at fault
    values: set[str] = field(default_factory=set)  # distinctive values that must never leak


def _phone(rng: random.Random, used: set[str]) -> str:
    while True:
        number = "+447" + rng.choice("45789") + "".join(rng.choice("0123456789") for _ in range(8))
        if number not in used and phonenumbers.is_valid_number(phonenumbers.parse(number)):
            used.add(number)
            return number


def _us_phone(rng: random.Random, used: set[str]) -> str:
    while True:
        area = rng.choice(["212", "646", "415", "312", "617"])
        number = f"+1{area}{rng.randrange(2, 10)}{rng.randrange(10**6):06d}"
        if number not in used and phonenumbers.is_valid_number(phonenumbers.parse(number)):
            used.add(number)
            return number


def _written(e164: str, style: int) -> str:
    """The same number as a CRM user might have typed it (national forms need the row's country)."""
    if e164.startswith("+1"):
        digits = e164[2:]
        return [
            f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
            f"{digits[:3]}-{digits[3:6]}-{digits[6:]}",
            f"+1 {digits[:3]} {digits[3:6]} {digits[6:]}",
            f"{digits[:3]}.{digits[3:6]}.{digits[6:]}",
        ][style % 4]
    national = "0" + e164[3:]
    return [
        f"+44 {e164[3:7]} {e164[7:]}",
        f"{national[:5]} {national[5:]}",
        e164,
        f"({national[:5]}) {national[5:8]}-{national[8:]}",
    ][style % 4]


def generate(
    path: Path,
    rows: int,
    *,
    seed: int = 7,
    duplicate_rate: float = 0.05,
    invalid_rate: float = 0.02,
    us_every: int = 0,
) -> Expected:
    """Write `rows` rows; with `us_every` N, every Nth person lives in the United States and
    has a US number written in national form ("(212) 424-1106"), which only the row's own
    country makes readable (duplicates of such a person repeat it nationally)."""
    rng = random.Random(seed)
    kinds = ["ok"] * rows
    slots = list(range(rows // 10, rows))  # duplicates need earlier rows to point at
    rng.shuffle(slots)
    n_duplicates, n_invalid = round(rows * duplicate_rate), round(rows * invalid_rate)
    for index in slots[:n_duplicates]:
        kinds[index] = "duplicate"
    for index in slots[n_duplicates : n_duplicates + n_invalid]:
        kinds[index] = "invalid"

    expected = Expected(rows=rows)
    phones: set[str] = set()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    line = 2
    originals: list[Person] = []
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(buffer.getvalue())
        for index, kind in enumerate(kinds):
            given, family = rng.choice(GIVEN), rng.choice(FAMILY)
            tag = f"{index:05d}{rng.randrange(16**6):06x}"
            email = f"{given[0]}.{family}{tag}@Example-{index % 7}.com".replace("'", "")
            us = bool(us_every) and index % us_every == 1
            e164 = _us_phone(rng, phones) if us else _phone(rng, phones)
            street = f"{rng.randrange(1, 300)} Import Street {tag}"
            if index % 13 == 0:
                street += f"\nFlat {rng.randrange(1, 40)}"
            birth = (
                f"{rng.randrange(1930, 2005)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
            )
            row = [
                given,
                f"{family}{tag}",
                email,
                _written(e164, index),
                "",
                birth,
                street,
                "New York" if us else rng.choice(CITIES),
                "10001" if us else "SW1A 1AA",
                ("United States" if index % 3 else "US")
                if us
                else ("United Kingdom" if index % 3 else "GB"),
                rng.choice(["Web", "Partner", "Event", ""]),
            ]
            if index % 5 == 0:  # mobile only: the phone column is empty
                row[3], row[4] = "", row[3]
            if kind == "duplicate":
                original = rng.choice(originals)
                style = rng.randrange(3)
                if style == 0:  # the same e-mail in another case, with spaces around it
                    row[2] = f"  {original.email.upper()} "
                    by = "email"
                elif style == 1:  # exactly the same e-mail
                    row[2] = original.email
                    by = "email"
                else:  # another e-mail, the same phone written another way
                    row[3], row[4] = _written(original.phone_e164, index + 1), ""
                    # A national form is read in the row's country: the original's.
                    if original.phone_e164.startswith("+1"):
                        row[7], row[8], row[9] = "New York", "10001", "United States"
                    else:
                        row[7], row[8], row[9] = rng.choice(CITIES), "SW1A 1AA", "GB"
                    by = "phone"
                expected.duplicates[line] = original.line
                expected.duplicate_by[line] = by
            elif kind == "invalid":
                fault = ["email", "phone", "birth_date", "given_name"][index % 4]
                if fault == "email":
                    row[2] = f"not-an-email-{tag}.example.com"
                elif fault == "phone":
                    row[3], row[4] = f"12{tag[:3]}", ""
                elif fault == "birth_date":
                    row[5] = f"{rng.randrange(1950, 2000)}-02-30"
                else:
                    row[0] = "X" * 101
                expected.invalid[line] = fault
            else:
                person = Person(line=line, email=email, phone_e164=e164)
                expected.people.append(person)
                originals.append(person)
                expected.values.update({email, email.lower(), e164, f"{family}{tag}", street})
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(row)
            text = buffer.getvalue()
            out.write(text)
            line += text.count("\n")
    return expected


def check_report(report: dict[str, Any], expected: Expected) -> None:
    """The import report (as JSON) holds exactly the answer key's counts, lines and reasons."""
    assert report["completed"] is True
    assert report["counts"]["rows"] == expected.rows
    assert report["counts"]["invalid"] == len(expected.invalid)
    assert report["counts"]["duplicate"] == len(expected.duplicates)
    assert report["counts"]["imported"] + report["counts"]["already_imported"] == len(
        expected.people
    )
    assert {i["line"]: i["fields"] for i in report["invalid"]} == {
        line: [field] for line, field in expected.invalid.items()
    }
    assert {d["line"]: d["of_line"] for d in report["duplicates"]} == expected.duplicates
    assert {d["line"]: d["by"] for d in report["duplicates"]} == expected.duplicate_by
    no_personal_data(json.dumps(report), expected)


def no_personal_data(text: str, expected: Expected) -> None:
    """`text` holds none of the generated personal values."""
    for marker in ("@", "+44", "Import Street", "Example-"):
        assert marker not in text
    for value in sorted(expected.values)[:500]:
        assert value not in text
        assert value.lower() not in text
