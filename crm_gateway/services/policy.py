"""The consent policy a `CustomerService` applies before it returns personal data.

There is no default: the API passes the `ConsentService` (the processing rule, `mayProcess`), and
an admin tool that returns no personal data under a purpose passes an `AllowAll` that says, by its
name, why it needs none. A reader of the code sees which one a call site chose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ConsentPolicy(Protocol):
    """Refuses (raises a `DomainError`) a read of a customer's personal data under `purpose` by
    organisation `org_id` that the processing rule does not allow."""

    @property
    def policy_name(self) -> str: ...

    def require_consent(self, customer_id: str, purpose: str, org_id: int) -> None: ...


@dataclass(frozen=True)
class AllowAll:
    """Allows every read: only for tools that never return personal data under a purpose (the
    CSV importer registers records; `audit verify-customers` recomputes commitments). `reason`
    is required and names why."""

    reason: str

    @property
    def policy_name(self) -> str:
        return f"allow-all: {self.reason}"

    def require_consent(self, customer_id: str, purpose: str, org_id: int) -> None:
        return None


#: The importer's policy: it writes records and never reads a profile back under a purpose.
IMPORT_POLICY = AllowAll("the CSV importer registers records, it returns no personal data")
#: `audit verify-customers`: decrypts to recompute commitments, returns only verdicts.
VERIFY_POLICY = AllowAll("commitment verification returns verdicts, never personal data")
