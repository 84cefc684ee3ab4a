"""Browser sessions of the portal and the console, and the one-time nonces of sign-in.

A session is a random 256-bit id in an HttpOnly, SameSite=Strict cookie; what it stands for (the
customer, or the console's API key) stays on the server. Each session has a CSRF token that the
page sends in `X-CSRF-Token` with every write: a cross-site form cannot read it (synchroniser
token). Both stores live in the gateway's database, so every process of the gateway (`serve
--workers N`, replicas) shares them and a restart keeps them: a nonce issued by one worker is
spent once by whichever worker the sign-in reaches. The database holds the SHA-256 of each
session id (a copy of the table cannot be replayed as cookies) and, for a console session, the
API key's hash, never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.services.errors import ServiceUnavailableError
from crm_gateway.store.models import SignInNonce, WebSessionRow

SessionKind = Literal["portal", "console"]
#: The database's session factory, asked for when first needed (the app's runtime is built by its
#: lifespan, after the stores are made).
SessionSource = Callable[[], sessionmaker[Session]]
#: Unexpired sign-in nonces at most: beyond it, sign-in answers 503 rather than fill the table.
MAX_ENTRIES: Final = 100_000


def _now() -> datetime:
    return datetime.now(UTC)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()


@dataclass
class WebSession:
    id: str
    kind: SessionKind
    # portal: the customer id; console: the hash of the API key it was signed in with.
    subject: str
    csrf_token: str
    expires_at: datetime
    # portal: the wallet that signed in.
    wallet: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf_token)


class NonceStore:
    """Nonces for Sign-In with Ethereum: each one is accepted once, before it expires."""

    def __init__(self, sessions: SessionSource, ttl_seconds: float) -> None:
        self._source = sessions
        self._ttl = timedelta(seconds=ttl_seconds)

    def _sessions(self) -> Session:
        return self._source()()

    def issue(self) -> str:
        nonce = secrets.token_hex(16)
        now = _now()
        with self._sessions() as session:
            session.execute(delete(SignInNonce).where(SignInNonce.expires_at <= now))
            live = session.scalar(select(func.count()).select_from(SignInNonce))
            if (live or 0) >= MAX_ENTRIES:
                session.commit()
                raise ServiceUnavailableError("too many sign-ins in progress; try again shortly")
            session.add(SignInNonce(nonce=nonce, expires_at=now + self._ttl))
            session.commit()
        return nonce

    def consume(self, nonce: str) -> bool:
        """Whether `nonce` was issued and not used or expired; it is spent either way (one
        conditional DELETE, so two processes cannot both accept it)."""
        with self._sessions() as session:
            spent = session.execute(delete(SignInNonce).where(SignInNonce.nonce == nonce))
            session.commit()
            if getattr(spent, "rowcount", 0) != 1:
                return False
        return True


class SessionStore:
    """Sessions by id, each until `ttl_seconds` after it was made."""

    def __init__(self, sessions: SessionSource, ttl_seconds: float) -> None:
        self._source = sessions
        self._ttl = timedelta(seconds=ttl_seconds)

    def _sessions(self) -> Session:
        return self._source()()

    def create(
        self, kind: SessionKind, subject: str, *, wallet: str | None = None, **extra: str
    ) -> WebSession:
        now = _now()
        web = WebSession(
            id=secrets.token_urlsafe(32),
            kind=kind,
            subject=subject,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=now + self._ttl,
            wallet=wallet,
            extra=dict(extra),
        )
        with self._sessions() as session:
            session.execute(delete(WebSessionRow).where(WebSessionRow.expires_at <= now))
            session.add(
                WebSessionRow(
                    id_hash=_digest(web.id),
                    kind=kind,
                    subject=subject,
                    csrf_token=web.csrf_token,
                    wallet=wallet,
                    expires_at=web.expires_at,
                )
            )
            session.commit()
        return web

    def get(self, session_id: str | None, kind: SessionKind) -> WebSession | None:
        if not session_id:
            return None
        with self._sessions() as session:
            row = session.get(WebSessionRow, _digest(session_id))
            if row is None or row.kind != kind or row.expires_at <= _now():
                return None
            return WebSession(
                id=session_id,
                kind=kind,
                subject=row.subject,
                csrf_token=row.csrf_token,
                expires_at=row.expires_at,
                wallet=row.wallet,
            )

    def end(self, session_id: str | None) -> None:
        if session_id:
            with self._sessions() as session:
                session.execute(
                    delete(WebSessionRow).where(WebSessionRow.id_hash == _digest(session_id))
                )
                session.commit()
