"""Several outbox rows in one transaction, each keeping its own status.

A row kind is batchable when its contract has a batch function that applies items one by one and
*skips* (with an event) an item the single call would refuse, instead of reverting the whole
transaction. The sender combines consecutive pending rows of such a kind from the same signer
into one call; the watcher settles each row from the events that name it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from crm_gateway.chain.errors import ErrorDecoder

# (confirmed?, error (name, args) when not, the events that belong to this row)
Outcome = tuple[bool, tuple[str, dict[str, Any]] | None, list[dict[str, Any]]]


@dataclass(frozen=True)
class Batcher:
    contract: str
    single: str
    batch: str
    combine: Callable[[Sequence[list[Any]]], list[Any]]
    # the key an item's events carry, computed from a row's arguments
    key_of_args: Callable[[list[Any]], tuple[Any, ...]]
    key_of_event: Callable[[dict[str, Any]], tuple[Any, ...]]
    applied_events: frozenset[str]
    skipped_event: str
    skip_error: Callable[[dict[str, Any], ErrorDecoder], tuple[str, dict[str, Any]]]

    def outcome(
        self, args: list[Any], events: Sequence[dict[str, Any]], decoder: ErrorDecoder
    ) -> Outcome:
        """How one row of a mined batch went, from the events that carry its key."""
        key = self.key_of_args(args)
        mine = [e for e in events if e["event"] in self.applied_events | {self.skipped_event}]
        mine = [e for e in mine if self.key_of_event(e["args"]) == key]
        skipped = [e for e in mine if e["event"] == self.skipped_event]
        if skipped:
            return False, self.skip_error(skipped[0]["args"], decoder), []
        if not mine:
            return False, ("NotApplied", {}), []
        return True, None, mine


def _hex(value: Any) -> str:
    return str(value).lower()


def _consent_skip(args: dict[str, Any], decoder: ErrorDecoder) -> tuple[str, dict[str, Any]]:
    selector = bytes.fromhex(str(args["errorSelector"])[2:])
    name = decoder.name_of(selector) or "Rejected"
    return name, {"customerId": args["customerId"], "nonce": args["nonce"]}


_SKIP_REASONS = ("CustomerAlreadyRegistered", "CustomerIsErased", "InvalidCustomerId")


def _registration_skip(args: dict[str, Any], _decoder: ErrorDecoder) -> tuple[str, dict[str, Any]]:
    reason = int(args["reason"])
    name = _SKIP_REASONS[reason] if reason < len(_SKIP_REASONS) else "RegistrationSkipped"
    return name, {"customerId": args["customerId"]}


CONSENT_RELAY = Batcher(
    contract="ConsentLedger",
    single="setConsentBySig",
    batch="setConsentsBySig",
    combine=lambda rows: [[row[0] for row in rows], [row[1] for row in rows]],
    key_of_args=lambda args: (_hex(args[0][0]), int(args[0][5])),
    key_of_event=lambda event: (_hex(event["customerId"]), int(event["nonce"])),
    applied_events=frozenset({"ConsentChanged"}),
    skipped_event="ConsentChangeRejected",
    skip_error=_consent_skip,
)

CUSTOMER_REGISTRATION = Batcher(
    contract="CustomerRegistry",
    single="register",
    batch="registerBatch",
    combine=lambda rows: [[row[0] for row in rows], [row[1] for row in rows]],
    key_of_args=lambda args: (_hex(args[0]),),
    key_of_event=lambda event: (_hex(event["customerId"]),),
    applied_events=frozenset({"CustomerRegistered", "HolderJoined"}),
    skipped_event="RegistrationSkipped",
    skip_error=_registration_skip,
)

BATCHERS: dict[tuple[str, str], Batcher] = {
    (b.contract, b.single): b for b in (CONSENT_RELAY, CUSTOMER_REGISTRATION)
}


def batcher_for(contract: str, function: str) -> Batcher | None:
    return BATCHERS.get((contract, function))
