"""The importer on the embedded chain: small files, every outcome of a row, reruns and the CLI."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from crm_gateway.cli import app
from crm_gateway.config import get_settings
from crm_gateway.customers.profile import CustomerProfile, email_index_form
from crm_gateway.runtime import Runtime
from crm_gateway.services.customers import Actor
from crm_gateway.services.importer import (
    CustomerImporter,
    ImportFailed,
    ImportOptions,
    ImportReport,
    importer_for,
)
from crm_gateway.store import customers as store
from crm_gateway.store.models import CustomerRecord, Operation, OperationStatus
from crm_gateway.vault.records import reveal
from tests.conftest import make_settings
from tests.importer.conftest import settings_env
from tests.importer.csvgen import check_report, generate

HEADER = ["First Name", "Last Name", "Email", "Phone Number", "Date of Birth", "Lead Source"]
ROWS: list[list[str]] = [
    ["Ada", "Lovelace", "ada@example.org", "+44 20 7946 0001", "1815-12-10", "Web"],  # 2 bad date
    ["Alan", "Turing", "alan@example.org", "020 7946 0002", "1912-06-23", ""],  # 3
    ["Grace", "Hopper", "  GRACE@Example.ORG ", "", "1906-12-09", "Event"],  # 4
    ["Grace", "H.", "grace@example.org", "", "", ""],  # 5 duplicate of 4 (e-mail)
    ["Alonzo", "Church", "alonzo@example.org", "+442079460002", "", ""],  # 6 duplicate of 3
    ["Kurt", "Gödel", "kurt@example", "", "", ""],  # 7 bad e-mail
    ["Emmy", "Noether", "emmy@example.org", "12345", "", ""],  # 8 bad phone
    ["X" * 101, "Long", "long@example.org", "", "", ""],  # 9 oversize name
    ["Barbara", "Liskov", "barbara@example.org", "020 7946 0003", "1939-11-07", ""],  # 10
    ["", "", "", "", "", ""],  # blank: skipped, not counted
    ["Edsger", "Dijkstra", "edsger@example.org", "", "1930-05-11", ""],  # 12
    ["Donald", "Knuth", "existing@example.org", "", "", ""],  # 13 duplicate of a customer
]
VALUES = {
    "Lovelace",
    "Turing",
    "alan@example.org",
    "grace@example.org",
    "kurt@example",
    "12345",
    "X" * 101,
    "Liskov",
    "+442079460002",
    "020 7946 0002",
    "existing@example.org",
    "1912-06-23",
}


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def importer(runtime: Runtime) -> CustomerImporter:
    return importer_for(runtime)


def run(importer: CustomerImporter, path: Path, actor: Actor, **options: Any) -> ImportReport:
    job = importer.prepare(path, actor, ImportOptions(**{"batch_size": 4, **options}))
    return job.run()


def existing_customer(importer: CustomerImporter, actor: Actor, runtime: Runtime) -> str:
    write = importer.customers.create(
        actor, {"email": "Existing@example.org"}, idempotency_key=None
    )
    runtime.pipeline.drain(until=lambda: _settled(runtime), timeout=30)
    return write.customer_id


def _settled(runtime: Runtime) -> bool:
    with runtime.session_factory() as session:
        return not session.scalar(
            select(func.count())
            .select_from(Operation)
            .where(Operation.status.in_([OperationStatus.PENDING, OperationStatus.SUBMITTED]))
        )


def opened(runtime: Runtime, customer_id: str) -> CustomerProfile:
    with runtime.session_factory() as session:
        record = store.get_record(session, customer_id)
        assert record is not None
        revealed = reveal(
            store.sealed_of(record),
            customer_id=bytes.fromhex(customer_id[2:]),
            version=record.version,
            org_id=record.org_id,
            provider=runtime.vault,
        )
    return CustomerProfile.from_canonical(revealed.canonical)


def customer_id_of(runtime: Runtime, email: str) -> str:
    return "0x" + runtime.indexer.customer_id(email_index_form(email)).hex()


def on_chain(runtime: Runtime, customer_id: str) -> tuple[int, list[int]]:
    registry = runtime.contracts["CustomerRegistry"]
    status = registry.functions.customer(customer_id).call()[0]
    return int(status), list(registry.functions.holdersOf(customer_id).call())


def test_every_row_is_imported_or_reported_by_line_without_values(
    runtime: Runtime, importer: CustomerImporter, steward: Actor, tmp_path: Path
) -> None:
    existing = existing_customer(importer, steward, runtime)
    report = run(importer, write_csv(tmp_path / "crm.csv", ROWS), steward)

    assert report.completed
    assert vars(report.counts) == {
        "rows": 11,
        "imported": 4,
        "already_imported": 0,
        "duplicate": 3,
        "invalid": 4,
        "erased": 0,
    }
    assert [(i["line"], i["fields"], i["columns"]) for i in report.invalid] == [
        (2, ["birth_date"], ["Date of Birth"]),
        (7, ["email"], ["Email"]),
        (8, ["phone"], ["Phone Number"]),
        (9, ["given_name"], ["First Name"]),
    ]
    assert report.duplicates == [
        {"line": 5, "of_line": 4, "by": "email"},
        {"line": 6, "of_line": 3, "by": "phone"},
        {"line": 13, "of_customer": existing, "by": "email"},
    ]
    assert report.ignored_columns == ["Lead Source"]
    assert report.on_chain["registered"] == 4
    text = json.dumps(report.as_json())
    for value in VALUES:
        assert value not in text
        assert value.lower() not in text

    for email in ("alan@example.org", "grace@example.org", "barbara@example.org"):
        customer_id = customer_id_of(runtime, email)
        assert opened(runtime, customer_id).email_index == email
        assert on_chain(runtime, customer_id) == (1, [1])
    assert opened(runtime, customer_id_of(runtime, "alan@example.org")).phone == "+442079460002"
    with runtime.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(CustomerRecord)) == 5


def test_a_rerun_counts_already_imported_rows_and_sends_nothing(
    runtime: Runtime, importer: CustomerImporter, steward: Actor, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "crm.csv", ROWS[:9])
    first = run(importer, path, steward)
    second = run(importer, path, steward)
    assert (first.counts.imported, second.counts.imported) == (3, 0)
    assert second.counts.already_imported == 3
    assert second.already_imported == [3, 4, 10]
    assert second.duplicates == first.duplicates
    assert second.invalid == first.invalid
    assert second.on_chain["batches"] == 0
    # The same people in another file are duplicates of the customers, not "already imported".
    other = run(importer, write_csv(tmp_path / "other.csv", ROWS[1:3]), steward)
    assert other.counts.duplicate == 2
    assert {d["of_customer"] for d in other.duplicates} == {
        customer_id_of(runtime, "alan@example.org"),
        customer_id_of(runtime, "grace@example.org"),
    }


def test_an_interrupted_import_finishes_on_rerun_without_registering_anyone_twice(
    runtime: Runtime,
    importer: CustomerImporter,
    steward: Actor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write_csv(tmp_path / "crm.csv", ROWS)
    sent = 0
    original = CustomerImporter.send

    def interrupt(self: CustomerImporter) -> None:
        nonlocal sent
        sent += 1
        if sent == 3:  # the batch of lines 8-10 is committed to the outbox, not yet sent
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(CustomerImporter, "send", interrupt)
    job = importer.prepare(path, steward, ImportOptions(batch_size=3))
    with pytest.raises(KeyboardInterrupt):
        job.run()
    monkeypatch.setattr(CustomerImporter, "send", original)
    assert job.report.counts.rows == 9
    with runtime.session_factory() as session:
        pending = session.scalar(
            select(func.count())
            .select_from(Operation)
            .where(Operation.status == OperationStatus.PENDING)
        )
    assert pending == 1

    second = run(importer, path, steward, batch_size=3)
    assert second.completed
    assert second.already_imported == [3, 4, 10]  # 10 was committed, and sent by this run
    assert second.counts.imported == 2  # lines 12 and 13
    registered = _registered_ids(runtime)
    assert len(registered) == len(set(registered)) == 5


def test_a_batch_the_chain_refused_is_sent_again(
    runtime: Runtime,
    importer: CustomerImporter,
    steward: Actor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write_csv(tmp_path / "crm.csv", ROWS[:4])
    monkeypatch.setattr(CustomerImporter, "pump", lambda *_args: None)
    monkeypatch.setattr(CustomerImporter, "send", lambda *_args: None)
    job = importer.prepare(path, steward, ImportOptions(batch_size=10))
    job.run()
    monkeypatch.undo()
    with runtime.session_factory() as session:
        [operation] = session.scalars(select(Operation).where(Operation.kind == "customers.import"))
        operation.status = OperationStatus.FAILED  # as if the chain had refused it
        operation.error_name = "AccessControlUnauthorizedAccount"
        session.commit()
    assert _registered_ids(runtime) == []

    second = run(importer, path, steward)
    assert second.counts.already_imported == 2
    assert second.on_chain["sent_again"] == 2
    assert second.on_chain["registered"] == 2
    assert sorted(_registered_ids(runtime)) == sorted(
        customer_id_of(runtime, e) for e in ("alan@example.org", "grace@example.org")
    )


def test_a_person_erased_since_the_import_is_not_brought_back(
    runtime: Runtime, importer: CustomerImporter, steward: Actor, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "crm.csv", ROWS[1:3])
    run(importer, path, steward)
    alan = customer_id_of(runtime, "alan@example.org")
    importer.customers.erase(steward, alan, idempotency_key=None)
    runtime.pipeline.drain(until=lambda: _settled(runtime), timeout=30)
    assert on_chain(runtime, alan)[0] == 2

    again = run(importer, path, steward)
    assert (again.counts.erased, again.counts.already_imported, again.erased) == (1, 1, [2])
    assert again.on_chain["batches"] == 0


def test_dry_run_validates_and_writes_nothing(
    runtime: Runtime, importer: CustomerImporter, steward: Actor, tmp_path: Path
) -> None:
    report = run(importer, write_csv(tmp_path / "crm.csv", ROWS), steward, dry_run=True)
    assert report.dry_run
    assert report.completed
    assert (report.counts.imported, report.counts.duplicate, report.counts.invalid) == (5, 2, 4)
    with runtime.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(CustomerRecord)) == 0
        assert session.scalar(select(func.count()).select_from(Operation)) == 1  # the grant


def test_unknown_columns_are_sealed_as_custom_attributes_when_asked(
    runtime: Runtime, importer: CustomerImporter, steward: Actor, tmp_path: Path
) -> None:
    report = run(
        importer,
        write_csv(tmp_path / "crm.csv", ROWS[2:3]),
        steward,
        keep_unknown_columns=True,
    )
    assert report.ignored_columns == []
    grace = opened(runtime, customer_id_of(runtime, "grace@example.org"))
    assert grace.custom_attributes == {"Lead_Source": "Event"}


def test_only_a_data_steward_may_import(
    runtime: Runtime, importer: CustomerImporter, tmp_path: Path
) -> None:
    deployer = str(runtime.contracts.record.deployer)  # ORG_ADMIN, not DATA_STEWARD
    job = importer.prepare(
        write_csv(tmp_path / "crm.csv", ROWS), Actor(None, 1, deployer), ImportOptions()
    )
    with pytest.raises(Exception, match="requires one of DATA_STEWARD"):
        job.run()


def test_fatal_problems_are_one_sentence(
    importer: CustomerImporter, steward: Actor, tmp_path: Path
) -> None:
    with pytest.raises(ImportFailed, match=r"cannot read .*missing\.csv"):
        importer.prepare(tmp_path / "missing.csv", steward, ImportOptions())
    (tmp_path / "latin1.csv").write_bytes("Email,Name\na@example.org,Jos\xe9\n".encode("latin-1"))
    with pytest.raises(ImportFailed, match="not utf-8-sig text"):
        importer.prepare(tmp_path / "latin1.csv", steward, ImportOptions())
    report = run(importer, tmp_path / "latin1.csv", steward, encoding="latin-1", dry_run=True)
    assert report.counts.imported == 1
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(ImportFailed, match=r"empty\.csv is empty"):
        importer.prepare(tmp_path / "empty.csv", steward, ImportOptions())


def _registered_ids(runtime: Runtime) -> list[str]:
    registry = runtime.contracts["CustomerRegistry"]
    logs = registry.events.CustomerRegistered.get_logs(from_block=0)
    return ["0x" + bytes(log["args"]["customerId"]).hex() for log in logs]


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The command in-process, with its settings in the environment (embedded chain, SQLite)."""
    for name, value in settings_env(make_settings(tmp_path)).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_cli_without_an_email_column_exits_1_with_one_sentence(
    cli: CliRunner, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "crm.csv", [["Ada", "+44 20 7946 0001"]], ["Name", "Phone"])
    result = cli.invoke(app, ["import", str(path)])
    assert result.exit_code == 1
    assert "the file has no e-mail column" in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_cli_unreadable_file_exits_1(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["import", str(tmp_path / "nope.csv")])
    assert result.exit_code == 1
    assert "cannot read" in result.output
    assert "Traceback" not in result.output


def test_cli_dry_run_reports_lines_and_never_values(cli: CliRunner, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "crm.csv", ROWS)
    result = cli.invoke(
        app, ["import", str(path), "--dry-run", "--report", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 0, result.output
    assert "would import 5" in result.output
    assert "ignored columns" in result.output
    assert "Lead Source" in result.output
    assert "line 7 (email)" in result.output
    assert "line 5 (same email as line 4)" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {
        "rows": 11,
        "imported": 5,
        "already_imported": 0,
        "duplicate": 2,
        "invalid": 4,
        "erased": 0,
    }
    for value in VALUES:
        assert value not in result.output
        assert value not in json.dumps(report)


def test_cli_mapping_file(cli: CliRunner, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "crm.csv", [["a@example.org", "x"]], ["Courriel", "Notes"])
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"Courriel": "email", "Notes": None}))
    result = cli.invoke(app, ["import", str(path), "--dry-run", "--mapping", str(mapping)])
    assert result.exit_code == 0, result.output
    assert "Courriel -> email" in result.output
    assert "would import 1" in result.output
    mapping.write_text("{not json")
    result = cli.invoke(app, ["import", str(path), "--dry-run", "--mapping", str(mapping)])
    assert result.exit_code == 1
    assert "is not JSON" in result.output


def test_national_us_numbers_with_their_country_are_valid_and_their_duplicates_exact(
    runtime: Runtime, importer: CustomerImporter, steward: Actor, tmp_path: Path
) -> None:
    """A generated export where every third person has a US number in national form."""
    expected = generate(tmp_path / "crm.csv", 300, seed=5, us_every=3)
    us_duplicates = [
        line
        for line, of in expected.duplicates.items()
        if expected.duplicate_by[line] == "phone"
        and next(p for p in expected.people if p.line == of).phone_e164.startswith("+1")
    ]
    assert us_duplicates  # the key has phone duplicates written nationally in US form

    report = run(importer, tmp_path / "crm.csv", steward, batch_size=50)

    check_report(report.as_json(), expected)
    assert report.on_chain["registered"] == len(expected.people)
    us_people = [p for p in expected.people if p.phone_e164.startswith("+1")]
    assert len(us_people) > 50
    for person in us_people[:10]:
        assert opened(runtime, customer_id_of(runtime, person.email)).phone == person.phone_e164


def test_cli_default_region_reads_national_numbers_of_rows_without_a_country(
    cli: CliRunner, tmp_path: Path
) -> None:
    rows = [
        ["Ada", "ada@example.org", "(212) 424-1106"],
        ["Alan", "alan@example.org", "212 424 1107"],
    ]
    path = write_csv(tmp_path / "crm.csv", rows, ["First Name", "Email", "Phone"])
    as_gb = cli.invoke(app, ["import", str(path), "--dry-run", "--default-region", "GB"])
    assert as_gb.exit_code == 0, as_gb.output
    assert "line 2 (phone)" in as_gb.output
    as_us = cli.invoke(app, ["import", str(path), "--dry-run", "--default-region", "us"])
    assert as_us.exit_code == 0, as_us.output
    assert "would import 2" in as_us.output
    wrong = cli.invoke(app, ["import", str(path), "--dry-run", "--default-region", "ZZ"])
    assert wrong.exit_code == 1
    assert "is not a region with a phone numbering plan" in wrong.output
    assert "Traceback" not in wrong.output
