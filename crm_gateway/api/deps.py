"""FastAPI dependencies shared by the routers.

The app factory puts `settings` (a `Settings`) and `session_factory` (a `sessionmaker[Session]`)
on `app.state`; everything else is injected from there, so tests build an app with their own.

    @router.post("/v1/things", status_code=202)
    def create(body: ThingIn, caller: CallerDep, session: SessionDep, key: IdempotencyKeyDep): ...
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, Header, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.api.errors import BadRequest, FieldError, Unauthorized
from crm_gateway.config import Settings
from crm_gateway.security.apikeys import authenticate

API_KEY_HEADER: Final = "X-API-Key"
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
_IDEMPOTENCY_KEY_RE: Final = re.compile(r"[\x20-\x7e]{1,255}", re.ASCII)


def get_settings(request: Request) -> Settings:
    """The app's settings (`app.state.settings`)."""
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """A session for this request, closed (uncommitted work rolled back) when it ends.

    Nothing is committed here: the service that writes commits.
    """
    factory: sessionmaker[Session] = request.app.state.session_factory
    with factory() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the API key's id, organisation, on-chain account and role."""

    api_key_id: str
    org_id: int
    account: str
    role: str


# auto_error=False: the missing-key problem is ours; the scheme still shows in OpenAPI.
_api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    scheme_name="ApiKey",
    description="API key issued to a CRM application (`crm_...`).",
)


def require_api_key(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_scheme)] = None,
) -> Caller:
    """The caller behind `X-API-Key`; 401 problem when the header is missing or the key invalid.

    The lookup uses a session of its own, closed at once, so no transaction stays open while the
    route runs (a `?wait=true` request may last many seconds).
    """
    if not api_key:
        raise Unauthorized(f"missing {API_KEY_HEADER} header")
    factory: sessionmaker[Session] = request.app.state.session_factory
    with factory() as session:
        row = authenticate(session, api_key)
        if row is None:
            raise Unauthorized("invalid API key")
        return Caller(api_key_id=row.id, org_id=row.org_id, account=row.account, role=row.role)


CallerDep = Annotated[Caller, Depends(require_api_key)]


def idempotency_key(
    value: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_KEY_HEADER,
            description="Optional client key (1-255 printable ASCII characters) that makes a "
            "write safe to retry: the same key with the same body returns the first operation.",
        ),
    ] = None,
) -> str | None:
    """The `Idempotency-Key` header, if sent; 400 problem when it is not 1-255 printable ASCII."""
    if value is None:
        return None
    if _IDEMPOTENCY_KEY_RE.fullmatch(value) is None:
        message = "must be 1 to 255 printable ASCII characters"
        raise BadRequest(
            f"invalid {IDEMPOTENCY_KEY_HEADER} header: {message}",
            errors=[
                FieldError(field=f"header.{IDEMPOTENCY_KEY_HEADER}", message=message, type="header")
            ],
        )
    return value


IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]
