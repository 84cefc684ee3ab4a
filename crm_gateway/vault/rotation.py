"""KEK rotation: re-wrap every data key under the newest KEK, then retire the old KEKs.

Records themselves are never re-encrypted: only `wrapped_key` and `kek_id` change (unwrap with
the old KEK, wrap with the current one), so ciphertexts and nonces stay byte for byte.

`rotate_all` is resumable: it works through the records whose `kek_id` is not the current one in
batches, committing each batch, so an interrupted run (crash, Ctrl-C) loses at most one batch of
work, and running it again re-wraps only what is left. It never makes a KEK itself: the command
`keys rotate` calls `provider.rotate()` once and then `rotate_all`; a rerun after an interruption
calls `rotate_all` alone. Each row is updated only if it still carries the wrapped key that was
read (compare-and-set), so a record written or erased concurrently is left alone.

Retiring (`retire_kek`, `retire_unused_keks`) destroys the old KEK once no record references it.
This is also what makes erasure final beyond the live table: a wrapped key of an erased record
that survives in a backup, in PostgreSQL's dead tuples or in SQLite's free pages is useless once
the KEK that wrapped it is gone. Rotate and retire regularly (e.g. monthly) for that reason.
Retire some time after the rotation, once every gateway process has picked up the new KEK.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.store import customers as store
from crm_gateway.vault.keys import KeyProvider, KeyProviderError, UsageCheck, WrappedKey

log = logging.getLogger(__name__)


@dataclass
class RotationProgress:
    """Where a `rotate_all` run stands (passed to `on_progress` after every batch)."""

    target_kek_id: str
    total: int  # records not on the target KEK when the run started
    rewrapped: int = 0
    skipped: int = 0  # changed or erased concurrently, left alone
    failed: list[str] = field(default_factory=list)  # customer ids whose key would not unwrap

    @property
    def done(self) -> int:
        return self.rewrapped + self.skipped + len(self.failed)


def rotate_all(
    session_factory: sessionmaker[Session],
    provider: KeyProvider,
    batch_size: int = 1_000,
    on_progress: Callable[[RotationProgress], None] | None = None,
) -> RotationProgress:
    """Re-wrap every data key not under the current KEK; one transaction per batch.

    A record whose wrapped key does not unwrap (tampered, or its KEK missing) is listed in
    `failed` and left as it is; its KEK then cannot be retired until that is resolved.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    target = provider.current_kek_id()
    with session_factory() as session:
        total = store.count_records_to_rewrap(session, target)
    progress = RotationProgress(target_kek_id=target, total=total)
    after: str | None = None
    while True:
        with session_factory() as session, session.begin():
            batch = store.records_to_rewrap(session, target, after=after, limit=batch_size)
            if not batch:
                break
            updates: list[store.Rewrap] = []
            for row in batch:
                old = WrappedKey(kek_id=row.kek_id, wrapped=row.wrapped_key)
                try:
                    fresh = provider.wrap(provider.unwrap(old))
                except KeyProviderError as exc:
                    log.error("cannot re-wrap the data key of %s: %s", row.customer_id, exc)
                    progress.failed.append(row.customer_id)
                    continue
                updates.append(
                    store.Rewrap(
                        customer_id=row.customer_id,
                        old_kek_id=row.kek_id,
                        old_wrapped_key=row.wrapped_key,
                        kek_id=fresh.kek_id,
                        wrapped_key=fresh.wrapped,
                    )
                )
            changed = store.apply_rewraps(session, updates)
            progress.rewrapped += changed
            progress.skipped += len(updates) - changed
            after = batch[-1].customer_id
        if on_progress is not None:
            on_progress(progress)
    log.info(
        "re-wrapped %d data key(s) under %s (%d skipped, %d failed)",
        progress.rewrapped,
        target,
        progress.skipped,
        len(progress.failed),
    )
    return progress


def usage_check(session_factory: sessionmaker[Session]) -> UsageCheck:
    """A `UsageCheck` that counts the records referencing a KEK id (for `provider.retire`)."""

    def count(kek_id: str) -> int:
        with session_factory() as session:
            return store.count_records_using_kek(session, kek_id)

    return count


def retire_kek(session_factory: sessionmaker[Session], provider: KeyProvider, kek_id: str) -> None:
    """Destroy `kek_id`; `KekInUseError` while any record (or the provider) still uses it."""
    provider.retire(kek_id, in_use=usage_check(session_factory))


def retire_unused_keks(session_factory: sessionmaker[Session], provider: KeyProvider) -> list[str]:
    """Retire every KEK except the current one that no record uses; the ids retired."""
    current = provider.current_kek_id()
    check = usage_check(session_factory)
    retired: list[str] = []
    for kek_id in provider.kek_ids():
        if kek_id != current and check(kek_id) == 0:
            provider.retire(kek_id, in_use=check)
            retired.append(kek_id)
    return retired
