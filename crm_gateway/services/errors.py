"""Refusals of the domain layer; the API turns each into a problem+json response."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal with a one-sentence reason and optional details for the client."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class NotFoundError(DomainError):
    status, slug, title = 404, "not-found", "Not found"


class PermissionDeniedError(DomainError):
    status, slug, title = 403, "forbidden", "Forbidden"


class ConflictError(DomainError):
    status, slug, title = 409, "conflict", "Conflict"


class ChainRefusedError(DomainError):
    """The contract would revert; the custom error is named in the extensions."""

    status, slug, title = 422, "chain-refused", "Refused by the contract"


class ServiceUnavailableError(DomainError):
    status, slug, title = 503, "unavailable", "Service unavailable"


class SignerUnavailableError(DomainError):
    """This gateway holds no key for the account that would sign the write; nothing was queued."""

    status, slug, title = 503, "signer-unavailable", "Signer unavailable"
