"""Request bodies: authenticated first, then limited in size, before anything parses them.

`BodyLimitMiddleware` sits in front of the routes (FastAPI reads and parses a body before it
runs a route's dependencies, the API-key check among them):

* A request that carries a body (a `Content-Length` above 0, or a chunked body) to an
  authenticated route (`/v1/...`) is authenticated here first, with the same check the routes
  use (`require_api_key`, which takes the console's session too; the customer's portal session
  under `/v1/me/`): a missing or invalid key or session gets its 401 problem and not one byte of
  the body is read. The two sign-ins (portal and console) are authenticated by their body.
* A declared `Content-Length` above `MAX_REQUEST_BODY_BYTES` gets a 413 problem at once, again
  without reading the body.
* A body without a length (chunked) is counted as it streams in; the chunk that goes past the
  limit ends the request with the same 413 problem, so at most the limit (plus one chunk) is
  ever held in memory.
"""

from __future__ import annotations

from typing import Final

from fastapi import HTTPException, Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_gateway.api.deps import API_KEY_HEADER, require_api_key
from crm_gateway.api.errors import ProblemError, problem_response
from crm_gateway.api.sessions import require_web_session
from crm_gateway.services.errors import DomainError

CONTENT_TOO_LARGE: Final = 413
#: Routes under this prefix need an API key (or the console session that stands for one) ...
AUTHENTICATED_PREFIX: Final = "/v1/"
#: ... except the customer portal's, which need the customer's own session instead ...
PORTAL_PREFIX: Final = "/v1/me/"
#: ... and the two sign-ins, whose body is what authenticates (size-limited all the same).
SIGN_IN_PATHS: Final = frozenset({"/v1/me/session", "/v1/console/session"})


async def _authenticate(request: Request) -> None:
    """The check the route would make, before its body is read (`ProblemError` if refused)."""
    path = request.url.path
    if path in SIGN_IN_PATHS:
        return
    if path.startswith(PORTAL_PREFIX):
        require_web_session(request, "portal")
        return
    await require_api_key(request, request.headers.get(API_KEY_HEADER))


def too_large_detail(limit: int) -> str:
    return f"request body is larger than the limit of {limit} bytes (MAX_REQUEST_BODY_BYTES)"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length_header = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        try:
            declared = int(length_header) if length_header is not None else None
        except ValueError:
            declared = -1
        if declared is not None and declared < 0:
            response = problem_response(
                400,
                "bad-request",
                "Bad Request",
                "the Content-Length header is not a whole number of bytes",
                instance=scope["path"],
            )
            await response(scope, receive, send)
            return
        has_body = chunked or (declared or 0) > 0
        if has_body and scope["path"].startswith(AUTHENTICATED_PREFIX):
            request = Request(scope)
            try:
                await _authenticate(request)
            except ProblemError as exc:
                await exc.to_response(request)(scope, receive, send)
                return
            except DomainError as exc:  # a refusal of the services, as the app's handler says it
                refusal = problem_response(
                    exc.status,
                    exc.slug,
                    exc.title,
                    exc.detail,
                    instance=scope["path"],
                    **exc.extensions,
                )
                await refusal(scope, receive, send)
                return
        if declared is not None and declared > self.max_bytes:
            response = problem_response(
                CONTENT_TOO_LARGE,
                "content-too-large",
                "Content Too Large",
                too_large_detail(self.max_bytes),
                instance=scope["path"],
            )
            await response(scope, receive, send)
            return
        if not has_body:
            await self.app(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_bytes

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI passes an HTTPException raised while it reads the body through to
                    # the problem handlers (any other error would become a 400).
                    raise HTTPException(CONTENT_TOO_LARGE, detail=too_large_detail(limit))
            return message

        return counted
