"""Named leases in the database, taken and renewed by compare-and-set.

Any number of processes share one database (gateway replicas, API workers, CLI commands, the
importer). A lease names a piece of work only one of them may do at a time:

* `signer:<address>`: signing for one account. Its holder alone allocates that account's nonces
  and sends its operations, in order; a process that does not hold it leaves them alone.
* `watcher`, `indexer`, `anchor`: the organisation's background work (leader election).

A lease is taken with one conditional `UPDATE ... WHERE name = ? AND (holder = me OR expires_at <
now)` (or an `INSERT` the primary key lets only one process make), which is atomic on SQLite (one
writer at a time) and on PostgreSQL (the second `UPDATE` waits for the first and re-checks its
condition). A holder renews its lease while it works; one that dies loses it after
`LEASE_SECONDS`, and another process takes over. Holding a lease is an optimisation of who works,
never the only guard: the sender's claim of each operation (`pending` -> `submitted` in the
transaction that records the signed transaction) and the unique (sender, nonce) of chain
transactions hold even when a lease expired under a slow holder.

Times are the processes' own UTC clocks, which must agree (one machine, or NTP) to well under
the lease time.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from enum import Enum

from sqlalchemy import CursorResult, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.store.models import Lease


class Hold(Enum):
    """The answer of `Leases.hold`."""

    NOT_HELD = "not held"  # another live process holds it
    ACQUIRED = "acquired"  # this process holds it now and did not just before
    RENEWED = "renewed"  # this process held it already and still does


def process_holder() -> str:
    """A name for this process that no other process (here or on another host) shares."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Leases:
    def __init__(
        self, sessions: sessionmaker[Session], *, seconds: float, holder: str | None = None
    ) -> None:
        self._sessions = sessions
        self._duration = timedelta(seconds=seconds)
        self.holder = holder or process_holder()
        # Until when this process holds each lease it took (its own record of what it wrote).
        self._until: dict[str, datetime] = {}
        self._lock = threading.Lock()

    @property
    def seconds(self) -> float:
        return self._duration.total_seconds()

    def hold(self, name: str) -> Hold:
        """Take lease `name`, or renew it; whether this process holds it now."""
        now = datetime.now(UTC)
        with self._lock:
            until = self._until.get(name)
        if until is not None and until - now > self._duration / 2:
            return Hold.RENEWED  # nobody can take it before it expires: no round trip
        new_until = now + self._duration
        with self._sessions() as session:
            result = session.execute(
                update(Lease)
                .where(
                    Lease.name == name,
                    or_(Lease.holder == self.holder, Lease.expires_at < now),
                )
                .values(holder=self.holder, expires_at=new_until)
                .execution_options(synchronize_session=False)
            )
            assert isinstance(result, CursorResult)
            if result.rowcount == 0:
                try:
                    with session.begin_nested():
                        session.add(Lease(name=name, holder=self.holder, expires_at=new_until))
                        session.flush()
                except IntegrityError:
                    session.rollback()
                    with self._lock:
                        self._until.pop(name, None)
                    return Hold.NOT_HELD
            session.commit()
        with self._lock:
            previous = self._until.get(name)
            self._until[name] = new_until
        return Hold.RENEWED if previous is not None and previous > now else Hold.ACQUIRED

    def holds(self, name: str) -> bool:
        """Whether this process holds `name` now (by its own record, no round trip)."""
        with self._lock:
            until = self._until.get(name)
        return until is not None and until > datetime.now(UTC)

    def release_all(self) -> None:
        """Give up every lease of this process (on a clean stop), so others take over at once."""
        with self._lock:
            self._until.clear()
        with self._sessions() as session:
            session.execute(
                update(Lease)
                .where(Lease.holder == self.holder)
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
                .execution_options(synchronize_session=False)
            )
            session.commit()
