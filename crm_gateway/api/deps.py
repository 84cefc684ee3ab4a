"""FastAPI dependencies shared by the routers.

The app factory puts `settings` (a `Settings`) and `session_factory` (a `sessionmaker[Session]`)
on `app.state`; everything else is injected from there, so tests build an app with their own.

    @router.post("/v1/things", status_code=202)
    def create(body: ThingIn, caller: CallerDep, session: SessionDep, key: IdempotencyKeyDep): ...
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import Depends, Header, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from crm_gateway.api.errors import BadRequest, FieldError, Forbidden, Unauthorized
from crm_gateway.api.sessions import web_session
from crm_gateway.config import Settings
from crm_gateway.security.apikeys import (
    AnyKeyAccount,
    KeyAccountCheck,
    authenticate,
    hash_api_key,
)
from crm_gateway.store.models import ApiKey

API_KEY_HEADER: Final = "X-API-Key"
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
_IDEMPOTENCY_KEY_RE: Final = re.compile(r"[\x20-\x7e]{1,255}", re.ASCII)
#: How long a successful API-key lookup is reused: a revoked key stops working within this time.
API_KEY_CACHE_SECONDS: Final = 2.0
API_KEY_CACHE_ENTRIES: Final = 10_000

# Dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in its
# thread pool, one hand-off per dependency per request, which under load cost more than the
# work they do.


async def get_settings(request: Request) -> Settings:
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


class KeyNotInForce(Forbidden):
    """The key is live, but its account is not (or no longer) its organisation's member holding
    its role in force, or the key is of another organisation than this gateway's."""

    slug = "api-key-not-in-force"
    title = "API key not in force"


def key_check(request: Request) -> KeyAccountCheck | AnyKeyAccount:
    """The app's `KeyAccountCheck` (`app.state.key_check`, else built from the runtime's read
    model and the gateway's organisation). An app with neither refuses every key."""
    state = request.app.state
    check: KeyAccountCheck | AnyKeyAccount | None = getattr(state, "key_check", None)
    if check is None:
        runtime = getattr(state, "runtime", None)
        if runtime is None:
            raise RuntimeError("the app has no runtime and no key_check: cannot check API keys")
        check = state.key_check = KeyAccountCheck(
            runtime.read_model, runtime.settings.gateway_org_id, chain_confirmation(runtime)
        )
    return check


def chain_confirmation(runtime: Any) -> Callable[[int, str, str], bool]:
    """The Consortium's answer: the account belongs to `org_id` and holds `role` in force."""
    from crm_gateway.services.access import AccessService, Role

    access = AccessService(runtime.contracts)

    def confirm(org_id: int, account: str, role: str) -> bool:
        try:
            wanted = Role(role)
        except ValueError:
            return False
        return access.organization_of(account) == org_id and access.has_role(wanted, account)

    return confirm


# auto_error=False: the missing-key problem is ours; the scheme still shows in OpenAPI.
_api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    scheme_name="ApiKey",
    description="API key issued to a CRM application (`crm_...`).",
)


class CallerCache:
    """Callers of API keys that authenticated in the last `ttl` seconds, by the key's hash.

    Every request authenticates; without this each one read the `api_keys` table. Only keys
    that authenticated are kept (an unknown or revoked key is looked up every time), and an
    entry is dropped `ttl` seconds after its lookup, so a key revoked in the database (by
    `crm-chaincode apikeys revoke`, another process) is refused within `ttl` seconds.
    """

    def __init__(
        self, ttl: float = API_KEY_CACHE_SECONDS, max_entries: int = API_KEY_CACHE_ENTRIES
    ):
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Caller]] = {}

    def get(self, key_hash: str) -> Caller | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if time.monotonic() >= entry[0]:
            self._entries.pop(key_hash, None)
            return None
        return entry[1]

    def put(self, key_hash: str, caller: Caller) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key_hash] = (time.monotonic() + self.ttl, caller)

    def clear(self) -> None:
        self._entries.clear()


def _in_force(check: KeyAccountCheck | AnyKeyAccount, caller: Caller) -> str | None:
    return check.refusal(caller.org_id, caller.account, caller.role)


def _lookup(factory: sessionmaker[Session], api_key: str) -> Caller | None:
    # A session of its own, closed at once, so no transaction stays open while the route runs
    # (a `?wait=true` request may last many seconds).
    with factory() as session:
        row = authenticate(session, api_key)
        if row is None:
            return None
        return Caller(api_key_id=row.id, org_id=row.org_id, account=row.account, role=row.role)


def _lookup_id(factory: sessionmaker[Session], api_key_id: str) -> Caller | None:
    """The caller of the live key with this id (a console session's), or None if revoked."""
    with factory() as session:
        row = session.get(ApiKey, api_key_id)
        if row is None or row.revoked_at is not None:
            return None
        return Caller(api_key_id=row.id, org_id=row.org_id, account=row.account, role=row.role)


async def require_api_key(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_scheme)] = None,
) -> Caller:
    """The caller behind `X-API-Key`; 401 problem when the header is missing or the key invalid,
    403 `api-key-not-in-force` when its account is not its organisation's member holding its
    role in force on-chain (`KeyAccountCheck`), or the key is of another organisation.

    A key seen in the last `API_KEY_CACHE_SECONDS` is answered from memory (`CallerCache`, one
    per app); otherwise the database and the read model are asked, in the thread pool.

    Without the header, the console's session (cookie, and the CSRF token for a write) stands
    for the key it was signed in with: the key stays on the server, never in the page or a URL,
    and is authenticated here on every request as if it had been sent.
    """
    state = request.app.state
    cache: CallerCache | None = getattr(state, "caller_cache", None)
    if cache is None:
        cache = state.caller_cache = CallerCache()
    if not api_key:
        console = web_session(request, "console")
        if console is None:
            raise Unauthorized(f"missing {API_KEY_HEADER} header")
        # The console's session names its key by id (the key is not kept anywhere).
        cache_key = "id:" + console.subject
        caller = cache.get(cache_key)
        if caller is not None:
            return caller
        caller = await run_in_threadpool(_lookup_id, state.session_factory, console.subject)
    else:
        cache_key = hash_api_key(api_key)
        caller = cache.get(cache_key)
        if caller is not None:
            return caller
        caller = await run_in_threadpool(_lookup, state.session_factory, api_key)
    if caller is None:
        raise Unauthorized("invalid API key")
    refusal = await run_in_threadpool(_in_force, key_check(request), caller)
    if refusal is not None:
        raise KeyNotInForce(refusal)
    cache.put(cache_key, caller)  # only on a miss: a revoked key ages out of the cache
    return caller


CallerDep = Annotated[Caller, Depends(require_api_key)]


async def idempotency_key(
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
