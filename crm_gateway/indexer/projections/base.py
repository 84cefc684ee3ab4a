"""The extension point of the read model: projections of contract events into `rm_*` tables.

A projection is a pure function of the events in `chain_events`, applied one event at a time in
chain order (block number, log index). Subclass `Projection`, name the tables it owns, and mark
one method per event with `@handles("Contract", "Event")`; then add the class to
`DEFAULT_PROJECTIONS` (in `projections/__init__.py`). The indexer calls the handlers inside the
database transaction that stores the events of a block range, so a projection is always exactly as
current as the cursor, and never applies an event twice.

When events are removed (a reorg), the indexer rebuilds every projection that handled one of them:
by default it empties the projection's tables and replays all its events. A projection whose rows
are partitioned by a key (a customer id, say) subclasses `PartitionedProjection` instead, so that
only the rows of the affected keys are recomputed: every table it owns has a column holding the
key, and every event it handles names the key in one argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from sqlalchemy import Executable, Table, delete
from sqlalchemy.orm import Session

from crm_gateway.indexer.events import EventKey, IndexedEvent
from crm_gateway.store.models import Base

Handler = Callable[[Session, IndexedEvent], None]
_F = TypeVar("_F", bound=Callable[..., Any])
_HANDLES_ATTRIBUTE = "__projection_handles__"


def table(model: type[Base]) -> Table:
    """The Core table of a model: handlers execute Core statements on it, which costs a tenth
    of an ORM-enabled statement (an import of 100,000 customers is 100,000 events)."""
    found = model.__table__
    assert isinstance(found, Table)
    return found


def execute(session: Session, statement: Executable, params: dict[str, Any] | None = None) -> Any:
    """Run a Core statement on the session's connection (inside the indexer's transaction)."""
    return session.connection().execute(statement, params)


def handles(contract: str, *events: str) -> Callable[[_F], _F]:
    """Mark a `Projection` method as the handler of these events of `contract`."""

    def mark(method: _F) -> _F:
        existing: list[EventKey] = list(getattr(method, _HANDLES_ATTRIBUTE, []))
        setattr(method, _HANDLES_ATTRIBUTE, existing + [(contract, e) for e in events])
        return method

    return mark


class Projection:
    """A read-model projection; see the module docstring."""

    #: A short unique name (for logs and the CLI).
    name: ClassVar[str] = ""
    #: The tables it owns, children first (the order `reset` deletes them in).
    tables: ClassVar[tuple[type[Base], ...]] = ()

    def handlers(self) -> dict[EventKey, Handler]:
        """Its handlers by (contract, event), collected from the `@handles` marks."""
        found: dict[EventKey, Handler] = {}
        for attribute in dir(type(self)):
            function = getattr(type(self), attribute, None)
            for key in getattr(function, _HANDLES_ATTRIBUTE, ()):
                if key in found:
                    raise TypeError(f"{type(self).__name__} handles {key} twice")
                found[key] = getattr(self, attribute)
        return found

    def reset(self, session: Session) -> None:
        """Empty its tables."""
        for table in self.tables:
            session.execute(delete(table))


class PartitionedProjection(Projection):
    """A projection whose rows are partitioned by one key: every table it owns has the key in
    `partition_column`, and every event it handles names the key in `partition_argument` (a
    customer id, say). A rebuild after a reorg then deletes and replays only the partitions
    whose events were removed."""

    #: The event argument that holds the key (e.g. "customerId").
    partition_argument: ClassVar[str]
    #: The column of each of `tables` that holds the key (e.g. "customer_id").
    partition_column: ClassVar[str]
    #: Keys deleted per statement (bound parameters of one `IN`).
    forget_chunk: ClassVar[int] = 500

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse, at import, a table without the key column (not at the first reorg)."""
        super().__init_subclass__(**kwargs)
        column: str | None = getattr(cls, "partition_column", None)
        if column is None:
            return  # a base of partitioned projections, not one
        for model in cls.tables:
            if column not in table(model).c:
                raise TypeError(f"{cls.__name__}: {model.__name__} has no column {column!r}")

    def key_of(self, event: IndexedEvent) -> str:
        """The partition of rows `event` touches."""
        return str(event.args[self.partition_argument])

    def forget(self, session: Session, keys: set[str]) -> None:
        """Delete the rows of these keys from every table, children first (`tables` order),
        before a rebuild replays their events."""
        ids = sorted(keys)
        owned = [table(model) for model in self.tables]
        for start in range(0, len(ids), self.forget_chunk):
            chunk = ids[start : start + self.forget_chunk]
            for owned_table in owned:
                column = owned_table.c[self.partition_column]
                execute(session, delete(owned_table).where(column.in_(chunk)))


class ProjectionRegistry:
    """The projections of one read model and their handlers by (contract, event)."""

    def __init__(self, projections: Iterable[Projection] = ()) -> None:
        self._projections: list[Projection] = []
        self._handlers: dict[EventKey, list[tuple[Projection, Handler]]] = {}
        for projection in projections:
            self.register(projection)

    def register(self, projection: Projection) -> None:
        if any(p.name == projection.name for p in self._projections):
            raise ValueError(f"a projection named {projection.name!r} is already registered")
        self._projections.append(projection)
        for key, handler in projection.handlers().items():
            self._handlers.setdefault(key, []).append((projection, handler))

    @property
    def projections(self) -> Sequence[Projection]:
        return tuple(self._projections)

    @property
    def handled(self) -> Mapping[EventKey, Sequence[tuple[Projection, Handler]]]:
        return self._handlers

    def keys_of(self, projection: Projection) -> set[EventKey]:
        return {
            key for key, pairs in self._handlers.items() if any(p is projection for p, _ in pairs)
        }

    def apply(self, session: Session, event: IndexedEvent) -> None:
        """Apply one event to every projection that handles it."""
        for _projection, handler in self._handlers.get(event.key, ()):
            handler(session, event)

    def tables(self) -> list[type[Base]]:
        return [table for projection in self._projections for table in projection.tables]
