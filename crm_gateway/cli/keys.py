"""`crm-chaincode keys`: rotate the vault's key-encryption keys (KEKs) and retire old ones.

`keys rotate` makes a new KEK and re-wraps every customer's data key under it
(`vault.rotation.rotate_all`); records are never re-encrypted. `keys retire` destroys an old KEK
once no record uses it. `keys list` shows every KEK and how many records it wraps. None of them
needs the chain: only the keyring file (`VAULT_KEYRING_FILE`) and the database (`DATABASE_URL`).

Resuming an interrupted rotation
--------------------------------
The database is the journal. A rotation has been fully applied exactly when no active record
has its data key wrapped under a KEK other than the current one; the current KEK is always the
newest (`rotate` appends and makes it current). So `keys rotate` first counts the active records
*not* under the current KEK:

* none: the last rotation (if any) is complete, so a new KEK is made and everything is re-wrapped;
* some: a rotation was interrupted (Ctrl-C, crash, a killed job) after the new KEK was made, or a
  request that wrapped a key just before the rotation committed after the run passed it. No new
  KEK is made; the run re-wraps what is left under the current KEK ("resuming").

Each batch is its own transaction, so an interruption loses at most one batch of work, and rows
are updated by compare-and-set, so a gateway may keep serving (and writing) during a rotation.
A record whose wrapped key does not authenticate is reported and left alone; it keeps its KEK in
use (so that KEK cannot be retired) and makes every later `keys rotate` resume rather than
rotate, until it is repaired or erased. `--new-kek` makes a new KEK regardless (when the current
one must be replaced at once, e.g. suspected compromise); that is always safe, because the run
re-wraps everything not under the newest KEK, whichever older KEK it is under.

Only one `keys rotate` runs at a time (an advisory lock on `<keyring>.rotate.lock`).

Retiring
--------
`keys retire KEK_ID` refuses while any record uses the KEK (and never retires the current one);
`keys retire --unused` retires every old KEK no record uses. A gateway that wrapped a data key
under the old KEK a moment before the rotation may still be committing that record, so retiring
also waits until the current KEK is `--grace` seconds old (default 60).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.cli.common import console, fail, one_sentence_errors, settings
from crm_gateway.config import Settings
from crm_gateway.store import customers as store
from crm_gateway.store.db import make_engine, make_session_factory, upgrade_database
from crm_gateway.store.models import AccessAction, AccessDecision
from crm_gateway.vault.keys import KekInUseError, KeyringFileProvider
from crm_gateway.vault.rotation import RotationProgress, retire_kek, rotate_all

keys = typer.Typer(help="Key-encryption keys of the personal-data vault: list, rotate, retire.")

# Extra passes after the first, for records a gateway wrapped under the old KEK mid-run.
_EXTRA_PASSES = 2
_DEFAULT_GRACE_SECONDS = 60
_FAILED_SHOWN = 3


@contextlib.contextmanager
def _vault(cfg: Settings) -> Iterator[tuple[KeyringFileProvider, sessionmaker[Session]]]:
    """The existing keyring and a session factory on the (migrated) database."""
    path = cfg.path(cfg.vault_keyring_file)
    if not path.exists():
        fail(
            f"no keyring at {path} (VAULT_KEYRING_FILE): the gateway creates it on first use, "
            "so this is the wrong path or nothing was ever encrypted here"
        )
    upgrade_database(cfg.database_url)
    engine = make_engine(cfg.database_url)
    try:
        yield KeyringFileProvider(path), make_session_factory(engine)
    finally:
        engine.dispose()


@contextlib.contextmanager
def _rotation_lock(keyring: Path) -> Iterator[None]:
    lock_path = keyring.with_name(keyring.name + ".rotate.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fail(f"another `crm-chaincode keys rotate` is running on {keyring}")
        yield
    finally:
        os.close(fd)  # releases the lock


def _log_key_change(
    sessions: sessionmaker[Session], cfg: Settings, action: AccessAction, what: str
) -> None:
    """Write a key rotation or retirement to the access log (ids and counts, never a key)."""
    with sessions() as session:
        store.log_access(
            session,
            action=action,
            decision=AccessDecision.ALLOWED,
            customer_id=None,
            org_id=cfg.gateway_org_id,
            reason=what,
        )
        session.commit()


def _pending(sessions: sessionmaker[Session], kek_id: str) -> int:
    with sessions() as session:
        return store.count_records_to_rewrap(session, kek_id)


@keys.command("rotate")
def keys_rotate(
    new_kek: bool = typer.Option(
        False,
        "--new-kek",
        help="Make a new KEK even if the last rotation was not fully applied.",
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Records per transaction (KEY_ROTATION_BATCH_SIZE)."
    ),
) -> None:
    """Make a new KEK and re-wrap every data key under it; a rerun resumes an interrupted one."""
    cfg = settings()
    with one_sentence_errors(), _vault(cfg) as (provider, sessions):
        with _rotation_lock(provider.path):
            previous = provider.current_kek_id()
            pending = _pending(sessions, previous)
            if pending and not new_kek:
                target = previous
                console.print(
                    f"resuming the rotation to KEK {target}: {pending} record(s) are still "
                    "under older KEKs (no new KEK made)"
                )
            else:
                target = provider.rotate()
                console.print(f"new KEK {target} (replaces {previous})")
            rewrapped, skipped, failed = _rewrap(
                sessions, provider, batch_size or cfg.key_rotation_batch_size
            )
        _log_key_change(
            sessions,
            cfg,
            AccessAction.KEY_ROTATE,
            f"KEK {target} current (previously {previous}): {rewrapped} data key(s) re-wrapped, "
            f"{len(failed)} failed",
        )
        with sessions() as session:
            usage = store.kek_usage(session)
    console.print(
        f"re-wrapped {rewrapped} data key(s) under {target}; {skipped} skipped (changed or "
        f"erased meanwhile), {len(failed)} failed"
    )
    console.print(
        "records per KEK: " + ", ".join(f"{k} {n}" for k, n in sorted(usage.items()))
        if usage
        else "no records"
    )
    if failed:
        shown = ", ".join(failed[:_FAILED_SHOWN]) + (" ..." if len(failed) > _FAILED_SHOWN else "")
        fail(
            f"{len(failed)} record(s) could not be re-wrapped because their wrapped key does not "
            f"authenticate or its KEK is missing ({shown}); they keep their KEK in use"
        )
    if any(kek != target for kek in usage):
        console.print("some records are still under older KEKs: run `crm-chaincode keys rotate`")
    else:
        console.print("old KEKs can now be retired: `crm-chaincode keys retire --unused`")


def _rewrap(
    sessions: sessionmaker[Session], provider: KeyringFileProvider, batch_size: int
) -> tuple[int, int, list[str]]:
    """Run `rotate_all` (again while records are left over) with a progress bar."""
    rewrapped = skipped = 0
    failed: list[str] = []
    columns = (
        TextColumn("re-wrapping data keys"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("rotate", total=_pending(sessions, provider.current_kek_id()))
        for _pass in range(1 + _EXTRA_PASSES):
            done_before = rewrapped + skipped + len(failed)

            def show(progress: RotationProgress, base: int = done_before) -> None:
                bar.update(task, completed=base + progress.done)

            try:
                run = rotate_all(sessions, provider, batch_size=batch_size, on_progress=show)
            except KeyboardInterrupt:
                bar.stop()
                fail(
                    f"interrupted with {_pending(sessions, provider.current_kek_id())} record(s) "
                    "left; run `crm-chaincode keys rotate` again to finish (it makes no new KEK)",
                    code=130,
                )
            rewrapped += run.rewrapped
            skipped += run.skipped
            failed += [c for c in run.failed if c not in failed]
            left = _pending(sessions, run.target_kek_id)
            if left <= len(failed):
                break
            bar.update(task, total=rewrapped + skipped + len(failed) + left)
    return rewrapped, skipped, failed


def _age_seconds(created_at: str) -> float | None:
    try:
        created = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return (datetime.now(UTC) - created).total_seconds()


def _grace_left(provider: KeyringFileProvider, grace: int) -> float:
    """Seconds until the current KEK is `grace` seconds old (0: old KEKs may be retired)."""
    current = next(info for info in provider.describe() if info.current)
    age = _age_seconds(current.created_at)
    return 0.0 if age is None else max(0.0, grace - age)


@keys.command("retire")
def keys_retire(
    kek_id: str | None = typer.Argument(None, help="The KEK to destroy."),
    unused: bool = typer.Option(False, "--unused", help="Retire every old KEK no record uses."),
    grace: int = typer.Option(
        _DEFAULT_GRACE_SECONDS,
        "--grace",
        min=0,
        help="Refuse until the current KEK is this many seconds old.",
    ),
) -> None:
    """Destroy an old KEK (or, with --unused, every one) once no record uses it."""
    if (kek_id is None) == (not unused):
        fail("give either a KEK id or --unused", code=2)
    cfg = settings()
    with one_sentence_errors(), _vault(cfg) as (provider, sessions):
        infos = {info.id: info for info in provider.describe()}
        if kek_id is not None:
            info = infos.get(kek_id)
            if info is None:
                fail(f"no KEK {kek_id} in {provider.path}")
            if info.retired:
                fail(f"KEK {kek_id} was already retired at {info.retired_at}")
            if info.current:
                fail(f"KEK {kek_id} is the current KEK; run `crm-chaincode keys rotate` first")
            with sessions() as session:
                count = store.count_records_using_kek(session, kek_id)
            if count:
                fail(
                    f"KEK {kek_id} is still used by {count} record(s); run "
                    "`crm-chaincode keys rotate` to re-wrap them first"
                )
            wait = _grace_left(provider, grace)
            if wait:
                fail(
                    f"the current KEK is younger than {grace} s, so a record wrapped under "
                    f"{kek_id} just before the rotation may still be committing; retry in "
                    f"{wait:.0f} s"
                )
            try:
                retire_kek(sessions, provider, kek_id)
            except KekInUseError as exc:  # a record appeared since the check above
                fail(str(exc))
            _log_key_change(sessions, cfg, AccessAction.KEY_RETIRE, f"KEK {kek_id} retired")
            console.print(f"retired KEK {kek_id}: its key material is gone from {provider.path}")
            return
        candidates = [i.id for i in infos.values() if not i.current and not i.retired]
        with sessions() as session:
            usage = store.kek_usage(session)
        idle = [k for k in candidates if not usage.get(k)]
        if idle and _grace_left(provider, grace):
            console.print(
                f"not retiring {len(idle)} unused KEK(s) yet: the current KEK is younger than "
                f"{grace} s; run this again later"
            )
            return
        retired: list[str] = []
        for candidate in idle:
            try:
                retire_kek(sessions, provider, candidate)
            except KekInUseError:
                continue
            retired.append(candidate)
            _log_key_change(sessions, cfg, AccessAction.KEY_RETIRE, f"KEK {candidate} retired")
    for candidate in retired:
        console.print(f"retired KEK {candidate}")
    in_use = [k for k in candidates if usage.get(k)]
    if not retired:
        console.print("no KEK to retire")
    if in_use:
        console.print(
            "still in use (run `crm-chaincode keys rotate`): "
            + ", ".join(f"{k} ({usage[k]} record(s))" for k in in_use)
        )


@keys.command("list")
def keys_list() -> None:
    """Every KEK in the keyring with the number of records whose data key it wraps."""
    cfg = settings()
    with one_sentence_errors(), _vault(cfg) as (provider, sessions):
        infos = provider.describe()
        with sessions() as session:
            usage = store.kek_usage(session)
    table = Table("KEK", "created", "status", "records")
    for info in infos:
        status = "current" if info.current else f"retired {info.retired_at}" if info.retired else ""
        table.add_row(info.id, info.created_at, status, str(usage.get(info.id, 0)))
    known = {info.id for info in infos if not info.retired}
    for kek_id in sorted(set(usage) - known):
        table.add_row(kek_id, "", "[red]missing from the keyring[/]", str(usage[kek_id]))
    console.print(table)
    current = next(info.id for info in infos if info.current)
    behind = sum(n for k, n in usage.items() if k != current)
    if behind:
        console.print(
            f"{behind} record(s) are not under the current KEK: run `crm-chaincode keys rotate`"
        )
