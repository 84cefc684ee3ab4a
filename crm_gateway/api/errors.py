"""Every error the gateway answers is an RFC 9457 problem (`application/problem+json`).

Members: `type` (always `https://crm-chaincode.dev/problems/<slug>`, never `about:blank`),
`title` (fixed per type), `status`, `detail` (this occurrence, for humans), `instance` (the request
path unless given), plus extensions such as `errors` (a list of `{field, message, type}` where
`field` is a path like `body.account`, `body.items[0].amount`, `query.wait` or
`header.Idempotency-Key`), `operation_id` or `error_id`.

Services and routers raise a `ProblemError` subclass (`BadRequest`, `Unauthorized`, `Forbidden`,
`NotFound`, `Conflict`, `UnprocessableContent`, `ServiceUnavailable`; or subclass one with their own
`slug`/`title`); `install_problem_handlers(app)` turns those, FastAPI's request validation errors,
Starlette's HTTP errors (404 unknown route, 405 ...) and anything unexpected (500, logged with an
`error_id`, nothing internal in the response) into problem responses. Request input is never echoed
back: it may hold personal data or secrets.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar, Final

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
PROBLEM_TYPE_BASE: Final = "https://crm-chaincode.dev/problems/"
_RESERVED_MEMBERS: Final = frozenset({"type", "title", "status", "detail", "instance"})
_MAX_ERRORS_IN_DETAIL: Final = 3


def problem_type(slug: str) -> str:
    """The `type` URI of a problem slug."""
    return PROBLEM_TYPE_BASE + slug


class FieldError(BaseModel):
    """One entry of a problem's `errors` list."""

    field: str
    message: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document (for OpenAPI; responses are built by `problem_response`)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    """A problem response; extensions must not reuse a standard member name."""
    _check_extensions(extensions)
    body: dict[str, Any] = {"type": problem_type(slug), "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body.update(jsonable_encoder({k: v for k, v in extensions.items() if v is not None}))
    return ProblemResponse(body, status_code=status, headers=dict(headers or {}))


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route: each status documented as a problem document (only
    `application/problem+json`; `api.openapi` adds the `Problem` schema and the statuses every
    route of its kind can answer)."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def _check_extensions(extensions: Mapping[str, Any]) -> None:
    clash = _RESERVED_MEMBERS & extensions.keys()
    if clash:
        raise TypeError(f"problem extensions may not be named {sorted(clash)}")


# --- the exceptions services and routers raise -------------------------------------------------


class ProblemError(Exception):
    """An error that becomes a problem response. Subclasses set `status`, `slug` and `title`.

    `detail` explains this occurrence; keyword arguments other than `title`, `slug`, `instance`
    and `headers` become extension members (e.g. `errors=[...]`, `operation_id=...`).
    """

    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal Server Error"
    default_headers: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        detail: str | None = None,
        *,
        title: str | None = None,
        slug: str | None = None,
        instance: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        _check_extensions(extensions)
        if title is not None:
            self.title = title
        if slug is not None:
            self.slug = slug
        self.detail = detail
        self.instance = instance
        self.headers: dict[str, str] = {**self.default_headers, **(headers or {})}
        self.extensions = extensions
        super().__init__(detail or self.title)

    def to_response(self, request: Request | None = None) -> ProblemResponse:
        instance = self.instance
        if instance is None and request is not None:
            instance = request.url.path
        return problem_response(
            self.status,
            self.slug,
            self.title,
            self.detail,
            instance=instance,
            headers=self.headers,
            **self.extensions,
        )


class BadRequest(ProblemError):
    status = 400
    slug = "bad-request"
    title = "Bad Request"


class Unauthorized(ProblemError):
    """401; carries `WWW-Authenticate: ApiKey` unless other headers are given."""

    status = 401
    slug = "unauthorized"
    title = "Unauthorized"
    default_headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": "ApiKey"}


class Forbidden(ProblemError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFound(ProblemError):
    status = 404
    slug = "not-found"
    title = "Not Found"


class Conflict(ProblemError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class UnprocessableContent(ProblemError):
    """422 for requests that are well-formed but cannot be carried out as asked."""

    status = 422
    slug = "unprocessable-content"
    title = "Unprocessable Content"


class ServiceUnavailable(ProblemError):
    status = 503
    slug = "service-unavailable"
    title = "Service Unavailable"


# --- request validation --------------------------------------------------------------------------


def field_path(loc: Sequence[str | int]) -> str:
    """An error location as a path: `("body", "items", 0, "x")` -> `body.items[0].x`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "field required"
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def field_errors(errors: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    """FastAPI/pydantic error dicts as `FieldError`s, without the offending input."""
    return [
        FieldError(
            field=field_path(error.get("loc", ())),
            message=_message(error),
            type=str(error.get("type", "value_error")),
        )
        for error in errors
    ]


def validation_problem(request: Request, exc: RequestValidationError) -> ProblemResponse:
    """The problem for a request that failed validation (400, 415 or 422)."""
    errors = exc.errors()
    instance = request.url.path
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = str((error.get("ctx") or {}).get("error", "invalid JSON"))
            loc = error.get("loc", ())
            where = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
            detail = f"malformed JSON in request body: {reason}{where}"
            return problem_response(
                400,
                "malformed-json",
                "Malformed JSON",
                detail,
                instance=instance,
                errors=[FieldError(field="body", message=detail, type="json_invalid")],
            )
    for error in errors:
        # FastAPI hands the raw bytes to validation when the Content-Type is not JSON.
        if tuple(error.get("loc", ()))[:1] == ("body",) and isinstance(
            error.get("input"), bytes | bytearray
        ):
            return problem_response(
                415,
                "unsupported-media-type",
                "Unsupported Media Type",
                "request body must be JSON sent with Content-Type: application/json",
                instance=instance,
            )
    items = field_errors(errors)
    shown = "; ".join(f"{item.field}: {item.message}" for item in items[:_MAX_ERRORS_IN_DETAIL])
    more = len(items) - _MAX_ERRORS_IN_DETAIL
    detail = f"invalid request: {shown}" + (f" (and {more} more)" if more > 0 else "")
    return problem_response(
        422, "validation-error", "Invalid Request", detail, instance=instance, errors=items
    )


# --- handlers ------------------------------------------------------------------------------------


#: Statuses whose RFC 9110 name differs from Python's `HTTPStatus` phrase.
_RFC9110_TITLES: Final = {413: "Content Too Large"}


def _slug_for(status: int) -> str:
    if status in _RFC9110_TITLES:
        return _RFC9110_TITLES[status].lower().replace(" ", "-")
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")
    except ValueError:
        return "http-error"


def _title_for(status: int) -> str:
    if status in _RFC9110_TITLES:
        return _RFC9110_TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "HTTP Error"


async def _handle_problem_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, ProblemError)
    if exc.status >= 500:
        logger.error("%s %s: %s", request.method, request.url.path, exc, exc_info=exc)
    return exc.to_response(request)


async def _handle_validation_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_problem(request, exc)


async def _handle_http_exception(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    default_detail = _title_for(status)
    detail = exc.detail if isinstance(exc.detail, str) else default_detail
    path = request.url.path
    if detail == default_detail:
        if status == 404:
            detail = f"nothing at {path}"
        elif status == 405:
            detail = f"method {request.method} is not allowed on {path}"
    return problem_response(
        status,
        _slug_for(status),
        default_detail,
        detail,
        instance=path,
        headers=exc.headers,
    )


async def _handle_unexpected(request: Request, exc: Exception) -> ProblemResponse:
    error_id = uuid.uuid4().hex
    logger.error(
        "unhandled error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc
    )
    return problem_response(
        500,
        "internal-error",
        "Internal Server Error",
        "an unexpected error occurred; quote the error_id when reporting it",
        instance=request.url.path,
        error_id=error_id,
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of `app` with a problem document, and document them so in its
    OpenAPI (`crm_gateway.api.openapi`)."""
    from crm_gateway.api.openapi import install_openapi

    install_openapi(app)
    app.add_exception_handler(ProblemError, _handle_problem_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(Exception, _handle_unexpected)
