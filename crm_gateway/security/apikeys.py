"""API keys of CRM applications: issue, authenticate, revoke.

A key is `crm_` followed by 43 URL-safe base64 characters (256 random bits). Only its SHA-256 is
stored: a fast hash is right for a uniformly random 256-bit secret (nothing to brute-force), and
the lookup stays cheap on every request. The first 12 characters (`prefix`) are stored in clear to
find the row; the full hash is then compared in constant time.

None of these functions commit: the caller owns the transaction (`session_scope`, or the request's
session followed by `session.commit()`). Issuing and revoking a key are written to the access log
in that transaction (`apikey_create`, `apikey_revoke`: the key's id, never the key).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from eth_utils.address import (
    is_address,
    is_checksum_address,
    is_checksum_formatted_address,
)
from eth_utils.address import to_checksum_address as _to_checksum_address
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crm_gateway.store.apikeys import get_api_key, get_api_key_by_prefix
from crm_gateway.store.customers import log_access
from crm_gateway.store.models import AccessAction, AccessDecision, ApiKey, utcnow

KEY_PREFIX: Final = "crm_"
PREFIX_LENGTH: Final = 12
_TOKEN_BYTES: Final = 32
_KEY_RE: Final = re.compile(r"crm_[A-Za-z0-9_-]{43}", re.ASCII)
_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII)
_CREATE_ATTEMPTS: Final = 5


def generate_api_key() -> str:
    """A new random key: `crm_` + `secrets.token_urlsafe(32)`."""
    return KEY_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def hash_api_key(plaintext: str) -> str:
    """The SHA-256 hex digest stored for a key."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def checksum_account(account: str) -> str:
    """`account` as an EIP-55 checksum address; `ValueError` if it is not a valid address.

    All-lower or all-upper hex is accepted; mixed case must carry a correct checksum.
    """
    if not isinstance(account, str) or _ADDRESS_RE.fullmatch(account) is None:
        raise ValueError("account must be 0x followed by 40 hex digits")
    if not is_address(account):
        raise ValueError("account is not a valid address")
    if is_checksum_formatted_address(account) and not is_checksum_address(account):
        raise ValueError("account has an invalid EIP-55 checksum")
    return str(_to_checksum_address(account))


def create_api_key(
    session: Session, org_id: int, account: str, role: str, label: str | None = None
) -> tuple[ApiKey, str]:
    """Issue a key for `account` of organisation `org_id`; returns the row and the plaintext.

    The plaintext is returned once and never stored. Flushes, does not commit.
    """
    checksummed = checksum_account(account)
    if not role:
        raise ValueError("role must not be empty")
    for _ in range(_CREATE_ATTEMPTS):
        plaintext = generate_api_key()
        api_key = ApiKey(
            prefix=plaintext[:PREFIX_LENGTH],
            key_hash=hash_api_key(plaintext),
            org_id=org_id,
            account=checksummed,
            role=role,
            label=label,
        )
        try:
            # A savepoint, so a (astronomically unlikely) prefix collision does not spoil the
            # caller's transaction.
            with session.begin_nested():
                session.add(api_key)
        except IntegrityError:
            continue
        _log_key_change(
            session,
            AccessAction.APIKEY_CREATE,
            api_key,
            f"API key {api_key.id} issued for account {checksummed} with role {role}",
        )
        return api_key, plaintext
    raise RuntimeError(f"could not find a free key prefix in {_CREATE_ATTEMPTS} attempts")


def authenticate(session: Session, plaintext: str) -> ApiKey | None:
    """The live key matching `plaintext`, or None (malformed, unknown or revoked)."""
    if _KEY_RE.fullmatch(plaintext) is None:
        return None
    candidate = hash_api_key(plaintext)
    api_key = get_api_key_by_prefix(session, plaintext[:PREFIX_LENGTH])
    if api_key is None or not hmac.compare_digest(api_key.key_hash, candidate):
        return None
    if api_key.revoked_at is not None:
        return None
    return api_key


class _HeldRole(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def org_id(self) -> int | None: ...
    @property
    def active(self) -> bool: ...


class MembershipLookup(Protocol):
    """Who belongs where on-chain, as the read model answers it (`ReadModel`)."""

    def organization_of(self, account: str) -> int | None: ...

    def roles_of(self, account: str) -> Sequence[_HeldRole]: ...


@dataclass(frozen=True)
class KeyAccountCheck:
    """An API key is exactly its account in its organisation: the key's organisation is this
    gateway's, the account belongs to that organisation on-chain (read model), and it holds the
    key's role there, in force. A key whose account left the organisation (revoked, then added
    to another one) is refused, whatever it holds elsewhere.

    The read model answers first; since it may lag the chain (a role granted a block ago), a
    refusal is confirmed with `confirm(org_id, account, role)`, the chain's answer, when given."""

    membership: MembershipLookup
    gateway_org_id: int
    confirm: Callable[[int, str, str], bool] | None = None

    def refusal(self, org_id: int, account: str, role: str) -> str | None:
        """Why a live key of (`org_id`, `account`, `role`) may not act here, or None."""
        reason = self._read_model_refusal(org_id, account, role)
        if reason is None or org_id != self.gateway_org_id:
            return reason
        if self.confirm is not None and self.confirm(org_id, account, role):
            return None
        return reason

    def _read_model_refusal(self, org_id: int, account: str, role: str) -> str | None:
        if org_id != self.gateway_org_id:
            return (
                f"the key belongs to organisation {org_id}; this gateway serves organisation "
                f"{self.gateway_org_id}"
            )
        account_org = self.membership.organization_of(account)
        if account_org != org_id:
            where = f"organisation {account_org}" if account_org else "no organisation"
            return f"the key's account {account} belongs to {where} on-chain, not {org_id}"
        if not any(
            held.role == role and held.org_id == org_id and held.active
            for held in self.membership.roles_of(account)
        ):
            return (
                f"the key's account {account} does not hold {role} in force in organisation "
                f"{org_id}"
            )
        return None


@dataclass(frozen=True)
class AnyKeyAccount:
    """Accept every live key without asking the chain: only for apps that have no chain at all
    (tests of the key cache and of error rendering). Named, so it is never the default."""

    name: str = "any-key-account"

    def refusal(self, org_id: int, account: str, role: str) -> str | None:
        return None


def revoke(session: Session, api_key_id: str) -> ApiKey | None:
    """Revoke a key (idempotent: the first revocation time is kept); None if there is no such key.

    Flushes, does not commit.
    """
    api_key = get_api_key(session, api_key_id)
    if api_key is None:
        return None
    if api_key.revoked_at is None:
        api_key.revoked_at = utcnow()
        session.flush()
        _log_key_change(
            session,
            AccessAction.APIKEY_REVOKE,
            api_key,
            f"API key {api_key.id} of account {api_key.account} revoked",
        )
    return api_key


def _log_key_change(session: Session, action: AccessAction, api_key: ApiKey, what: str) -> None:
    """Record the issue or revocation in the access log (the key's id, never the key)."""
    log_access(
        session,
        action=action,
        decision=AccessDecision.ALLOWED,
        customer_id=None,
        org_id=api_key.org_id,
        reason=what,
    )
