"""Browser sessions of the portal and the console, and the one-time nonces of sign-in.

A session is a random 256-bit id in an HttpOnly, SameSite=Strict cookie; what it stands for (the
customer, or the console's API key) stays on the server. Each session has a CSRF token that the
page sends in `X-CSRF-Token` with every write: a cross-site form cannot read it (synchroniser
token). Both stores are in this process's memory: a restart signs everyone out, and a second
gateway process does not share them (sign-in is bound to the process that issued the nonce).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Final, Literal

from crm_gateway.services.errors import ServiceUnavailableError

SessionKind = Literal["portal", "console"]
MAX_ENTRIES: Final = 100_000


@dataclass
class WebSession:
    id: str
    kind: SessionKind
    # portal: the customer id; console: the API key (the key itself, kept server-side only).
    subject: str
    csrf_token: str
    expires_at: float
    # portal: the wallet that signed in.
    wallet: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf_token)


class NonceStore:
    """Nonces for Sign-In with Ethereum: each one is accepted once, before it expires."""

    def __init__(self, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        self._nonces: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        nonce = secrets.token_hex(16)
        with self._lock:
            self._sweep()
            self._nonces[nonce] = time.monotonic() + self._ttl
        return nonce

    def consume(self, nonce: str) -> bool:
        """Whether `nonce` was issued here and not used or expired; it is spent either way."""
        with self._lock:
            expires = self._nonces.pop(nonce, None)
        return expires is not None and time.monotonic() < expires

    def _sweep(self) -> None:
        now = time.monotonic()
        if len(self._nonces) >= MAX_ENTRIES:
            for key in [k for k, at in self._nonces.items() if at <= now]:
                del self._nonces[key]
            if len(self._nonces) >= MAX_ENTRIES:
                raise ServiceUnavailableError("too many sign-ins in progress; try again shortly")


class SessionStore:
    """Sessions by id, each until `ttl_seconds` after it was made."""

    def __init__(self, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        self._sessions: dict[str, WebSession] = {}
        self._lock = threading.Lock()

    def create(
        self, kind: SessionKind, subject: str, *, wallet: str | None = None, **extra: str
    ) -> WebSession:
        session = WebSession(
            id=secrets.token_urlsafe(32),
            kind=kind,
            subject=subject,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=time.monotonic() + self._ttl,
            wallet=wallet,
            extra=dict(extra),
        )
        with self._lock:
            if len(self._sessions) >= MAX_ENTRIES:
                now = time.monotonic()
                self._sessions = {k: s for k, s in self._sessions.items() if s.expires_at > now}
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None, kind: SessionKind) -> WebSession | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or session.kind != kind:
                return None
            if time.monotonic() >= session.expires_at:
                del self._sessions[session_id]
                return None
            return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)
