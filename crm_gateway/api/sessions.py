"""Browser sessions as FastAPI dependencies: the portal's signed-in customer, the console's key.

Both are cookies that only this gateway reads (HttpOnly, SameSite=Strict, Path=/; Secure when
PUBLIC_URL is https). A request that changes anything must also carry the session's CSRF token in
`X-CSRF-Token`, which a page of another site cannot read.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Depends, Request, Response
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.api.errors import Forbidden, Unauthorized
from crm_gateway.config import Settings
from crm_gateway.security.sessions import NonceStore, SessionKind, SessionStore, WebSession

PORTAL_COOKIE: Final = "crm_portal"
CONSOLE_COOKIE: Final = "crm_console"
CSRF_HEADER: Final = "X-CSRF-Token"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_COOKIES: Final[dict[SessionKind, str]] = {"portal": PORTAL_COOKIE, "console": CONSOLE_COOKIE}


def install_session_stores(state: object, settings: Settings) -> None:
    """Put the app's session and nonce stores on `app.state` (one of each per app)."""

    def database() -> sessionmaker[Session]:
        factory: sessionmaker[Session] = state.session_factory  # type: ignore[attr-defined]
        return factory

    state.web_sessions = SessionStore(database, settings.web_session_ttl_seconds)  # type: ignore[attr-defined]
    state.siwe_nonces = NonceStore(database, settings.siwe_max_lifetime_seconds)  # type: ignore[attr-defined]


def session_store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.web_sessions
    return store


def nonce_store(request: Request) -> NonceStore:
    store: NonceStore = request.app.state.siwe_nonces
    return store


def web_session(request: Request, kind: SessionKind) -> WebSession | None:
    """The request's session of `kind`, or None; a write without its CSRF token is refused.
    (An app without session stores, a bare router in a test, has no sessions.)"""
    cookie = request.cookies.get(_COOKIES[kind])
    store: SessionStore | None = getattr(request.app.state, "web_sessions", None)
    session = None if cookie is None or store is None else store.get(cookie, kind)
    if session is None:
        return None
    if request.method not in _SAFE_METHODS and not session.csrf_ok(
        request.headers.get(CSRF_HEADER)
    ):
        raise Forbidden(
            f"a write in a {kind} session needs its CSRF token in the {CSRF_HEADER} header",
            slug="csrf-token-missing",
            title="CSRF token missing or wrong",
        )
    return session


def require_web_session(request: Request, kind: SessionKind) -> WebSession:
    session = web_session(request, kind)
    if session is None:
        raise Unauthorized(
            f"sign in first: no {kind} session", headers={"WWW-Authenticate": "Cookie"}
        )
    return session


def set_session_cookie(
    response: Response, settings: Settings, kind: SessionKind, session: WebSession
) -> None:
    response.set_cookie(
        _COOKIES[kind],
        session.id,
        max_age=settings.web_session_ttl_seconds,
        path="/",
        secure=settings.origin.startswith("https://"),
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, kind: SessionKind) -> None:
    response.delete_cookie(_COOKIES[kind], path="/", httponly=True, samesite="strict")


async def _portal(request: Request) -> WebSession:
    return require_web_session(request, "portal")


PortalSessionDep = Annotated[WebSession, Depends(_portal)]
