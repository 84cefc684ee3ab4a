"""The OpenAPI document says what the gateway answers, errors included.

Every error is an RFC 9457 problem (`application/problem+json`, the `Problem` schema). Which
statuses an operation can answer follows from what it takes and what it depends on, so it is
derived here once for every route rather than repeated on each:

* every operation: 500 (unexpected; logged with an `error_id`) and 503 (the chain or the
  database does not answer), except `/healthz`;
* any input (query, path, header or body): 400 (a refusal of the input as a whole) and 422
  (a field that fails validation, or a write the contract would refuse);
* a path parameter: 404;
* a request body, or any method but GET: 413 (over `MAX_REQUEST_BODY_BYTES`); a body: 415
  (not JSON);
* an API key (`X-API-Key`): 401 (missing or invalid) and 403 (the role is not held here);
* a chain write (`WriteDep`): 409 (an `Idempotency-Key` reused with another body, or a
  conflicting record), and 200 with the same body as 202 once it settled (`?wait=true`).

A route declares any other status itself with `responses=problem_responses(...)` (or its own
schema for a status, which is then kept). FastAPI's own `HTTPValidationError` schema is dropped:
validation errors are problems too.
"""

from __future__ import annotations

import copy
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from crm_gateway.api.errors import PROBLEM_JSON, FieldError, Problem

PROBLEM_REF: Final = {"$ref": "#/components/schemas/Problem"}
_DESCRIPTIONS: Final = {
    400: "Bad Request: the input as a whole is refused",
    401: "Unauthorized: the X-API-Key header is missing or the key is not valid",
    403: "Forbidden: the key's account does not hold the role this needs here",
    404: "Not Found",
    409: "Conflict",
    413: "Content Too Large: the body is over MAX_REQUEST_BODY_BYTES",
    415: "Unsupported Media Type: the body must be JSON",
    422: "Unprocessable Content: a field is invalid, or the contract would refuse the write",
    500: "Internal Server Error (quote the error_id)",
    503: "Service Unavailable: the chain or the database does not answer",
}
#: Routes that answer without any dependency on the chain or the database.
_NO_BACKEND: Final = frozenset({"/healthz"})


def problem_response(status: int) -> dict[str, Any]:
    """One OpenAPI response object: a problem document."""
    description = _DESCRIPTIONS.get(status) or HTTPStatus(status).phrase
    return {"description": description, "content": {PROBLEM_JSON: {"schema": dict(PROBLEM_REF)}}}


def problem_statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The problem statuses an operation can answer, from what its OpenAPI entry says it takes
    (parameters, body, security), so it holds whatever way a route declared them."""
    parameters = operation.get("parameters", [])
    where = {parameter.get("in") for parameter in parameters}
    has_body = "requestBody" in operation
    statuses = {500}
    if path not in _NO_BACKEND:
        statuses.add(503)
    if parameters or has_body:
        statuses |= {400, 422}
    if "path" in where:
        statuses.add(404)
    if has_body:
        statuses |= {413, 415}
    if method not in {"get", "head"}:
        statuses.add(413)
    if operation.get("security"):
        statuses |= {401, 403}
    if is_write(operation):
        statuses.add(409)
    return statuses


def is_write(operation: dict[str, Any]) -> bool:
    """A chain write (`WriteDep`): it takes `?wait` and an `Idempotency-Key` header."""
    names = {(p.get("in"), p.get("name")) for p in operation.get("parameters", [])}
    return {("query", "wait"), ("header", "Idempotency-Key")} <= names


def _problem_schemas() -> dict[str, Any]:
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    definitions.setdefault(
        "FieldError", FieldError.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    return {"Problem": schema, **definitions}


def install_openapi(app: FastAPI) -> None:
    """Replace `app.openapi` by one that documents every route's problems (see the module)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas.update(_problem_schemas())
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                validation = responses.get("422", {}).get("content", {})
                if "application/json" in validation:  # FastAPI's HTTPValidationError
                    del responses["422"]
                for status in sorted(problem_statuses(path, method, operation)):
                    responses.setdefault(str(status), problem_response(status))
                if is_write(operation) and "202" in responses and "200" not in responses:
                    responses["200"] = copy.deepcopy(responses["202"])
                    responses["200"]["description"] = "Settled (`?wait=true`)"
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
