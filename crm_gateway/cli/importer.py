"""`crm-chaincode import FILE.csv`: bring a CRM's customer export into the vault and the registry.

The work is `services.importer`; this module parses options, runs the transaction pipeline here
(like the other admin commands) and shows progress and the report. Nothing it prints or writes
holds a value from the file: only counts, line numbers, column names and customer ids.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import phonenumbers
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from crm_gateway.cli.admin import _actor, _runtime
from crm_gateway.cli.common import console, err_console, fail
from crm_gateway.services.access import AccessService
from crm_gateway.services.customers import Actor
from crm_gateway.services.importer import (
    DEFAULT_BATCH_SIZE,
    Counts,
    ImportFailed,
    ImportOptions,
    ImportReport,
    importer_for,
)

_SHOWN = 20  # invalid and duplicate rows listed on the terminal; the report file has them all


def import_command(
    file: Path = typer.Argument(
        ..., help="The CSV export (header in the first row).", show_default=False
    ),
    as_: str | None = typer.Option(
        None, "--as", help="Signing DATA_STEWARD account (default: the deployer)."
    ),
    batch_size: int = typer.Option(
        DEFAULT_BATCH_SIZE,
        "--batch-size",
        min=1,
        help="Customers per registerBatch transaction (about 94k gas each: keep the batch "
        "under the block gas limit).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Validate and look for duplicates only: nothing is written."
    ),
    report: Path | None = typer.Option(
        None, "--report", help="Write the full report here as JSON (line numbers, no values)."
    ),
    mapping: Path | None = typer.Option(
        None,
        "--mapping",
        help='JSON object from CSV header to profile field, e.g. {"Mail": "email", "Notes": null}.',
    ),
    keep_unknown_columns: bool = typer.Option(
        False,
        "--keep-unknown-columns",
        help="Keep columns that map to no profile field as custom attributes (else ignored).",
    ),
    encoding: str = typer.Option("utf-8-sig", "--encoding", help="The file's text encoding."),
    delimiter: str | None = typer.Option(
        None, "--delimiter", help="Cell separator (default: guessed from the header line)."
    ),
    date_format: str | None = typer.Option(
        None,
        "--date-format",
        help="strptime format of birth dates when they are not ISO YYYY-MM-DD, e.g. %d/%m/%Y.",
    ),
    default_region: str | None = typer.Option(
        None,
        "--default-region",
        help="Region (ISO 3166-1, e.g. US) of national phone numbers in rows without an address "
        "country (default: DEFAULT_PHONE_REGION).",
    ),
) -> None:
    """Import customers from a CRM's CSV export (Salesforce, HubSpot or generic columns).

    Each row is validated, checked for duplicates (within the file and against this
    organisation's customers), sealed in the vault and registered on-chain in batches. Run it
    again on the same file after an interruption: it finishes the job and registers nobody twice.
    """
    options = ImportOptions(
        batch_size=batch_size,
        dry_run=dry_run,
        keep_unknown_columns=keep_unknown_columns,
        mapping=_load_mapping(mapping) if mapping else None,
        encoding=encoding,
        delimiter=_delimiter(delimiter),
        date_format=date_format,
        phone_region=_region(default_region) if default_region else None,
    )
    with _runtime() as runtime:
        account = _actor(runtime, as_)
        if not dry_run and runtime.keystore.get(account) is None:
            fail(f"the keystore has no key for {account}, so it cannot sign the batches")
        org_id = AccessService(runtime.contracts).organization_of(account)
        actor = Actor(api_key_id=None, org_id=org_id, account=account)
        job = importer_for(runtime).prepare(file, actor, options)
        _print_columns(job.report)
        try:
            with _progress() as progress:
                task = progress.add_task("import", total=job.total, **_fields(Counts()))

                def on_progress(processed: int, total: int, counts: Counts) -> None:
                    progress.update(task, completed=processed, total=total, **_fields(counts))

                job.run(on_progress)
        except ImportFailed:
            _finish(job.report, report)
            raise
        except KeyboardInterrupt:
            _finish(job.report, report)
            fail(
                f"interrupted after {job.report.counts.rows} rows; run the same command again "
                "to finish the import",
                code=130,
            )
        _finish(job.report, report)


def _load_mapping(path: Path) -> dict[str, str | None]:
    try:
        loaded: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"cannot read the mapping file {path}: {exc.strerror or type(exc).__name__}")
    except ValueError as exc:
        fail(f"the mapping file {path} is not JSON: {exc}")
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in loaded.items()
    ):
        fail(f"the mapping file {path} must be a JSON object from header to field name or null")
    return dict(loaded)


def _delimiter(value: str | None) -> str | None:
    if value is None:
        return None
    value = {"\\t": "\t", "tab": "\t"}.get(value.lower(), value)
    if len(value) != 1:
        fail("--delimiter must be one character (or tab)")
    return value


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "imported {task.fields[imported]}  already {task.fields[already]}  "
            "duplicate {task.fields[duplicate]}  invalid {task.fields[invalid]}"
        ),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _fields(counts: Counts) -> dict[str, Any]:
    return {
        "imported": counts.imported,
        "already": counts.already_imported,
        "duplicate": counts.duplicate,
        "invalid": counts.invalid,
    }


def _print_columns(report: ImportReport) -> None:
    used = ", ".join(f"{header} -> {target}" for header, target in report.columns.items())
    console.print(f"columns: {used}", highlight=False, soft_wrap=True)
    if report.ignored_columns:
        console.print(
            f"ignored columns (use --keep-unknown-columns or --mapping to keep them): "
            f"{', '.join(report.ignored_columns)}",
            highlight=False,
            soft_wrap=True,
        )


def _finish(report: ImportReport, path: Path | None) -> None:
    """Print the summary and write the report file (also after a failure or an interruption)."""
    counts = report.counts
    verb = "would import" if report.dry_run else "imported"
    console.print(
        f"rows {counts.rows}: {verb} {counts.imported}, already imported "
        f"{counts.already_imported}, duplicate {counts.duplicate}, invalid {counts.invalid}"
        + (f", erased since their import {counts.erased}" if counts.erased else ""),
        highlight=False,
    )
    if not report.dry_run:
        chain = report.on_chain
        console.print(
            f"on-chain: {chain['batches']} batches, {chain['registered']} registered, "
            f"{chain['joined']} joined, {chain['skipped']} skipped"
            + (f", {chain['sent_again']} sent again" if chain["sent_again"] else ""),
            highlight=False,
        )
    console.print(
        f"{counts.rows} rows in {report.elapsed_seconds:.1f} s ({report.rows_per_second} rows/s)",
        highlight=False,
    )
    for title, items in (("invalid", report.invalid), ("duplicate", report.duplicates)):
        if not items:
            continue
        shown = "; ".join(_describe(item) for item in items[:_SHOWN])
        more = f"; and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
        console.print(f"{title} rows: {shown}{more}", highlight=False, soft_wrap=True)
    if path is not None:
        _write_json(path, report.as_json())
        console.print(f"report written to {path}", highlight=False)
    elif len(report.invalid) > _SHOWN or len(report.duplicates) > _SHOWN:
        err_console.print("pass --report FILE.json for every line", highlight=False)


def _describe(item: dict[str, Any]) -> str:
    if "fields" in item:
        return f"line {item['line']} ({', '.join(item['fields'])})"
    of = f"line {item['of_line']}" if "of_line" in item else f"customer {item['of_customer']}"
    return f"line {item['line']} (same {item['by']} as {of})"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        fail(f"cannot write the report to {path}: {exc.strerror or type(exc).__name__}")


def _region(value: str) -> str:
    region = value.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        fail(f"--default-region {value!r} is not a region with a phone numbering plan, e.g. US")
    return region
