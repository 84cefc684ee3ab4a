"""Queries on the `api_keys` table (no hashing or key handling here: see `security.apikeys`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_gateway.store.models import ApiKey


def get_api_key(session: Session, api_key_id: str) -> ApiKey | None:
    """The key with this id, revoked or not."""
    return session.get(ApiKey, api_key_id)


def get_api_key_by_prefix(session: Session, prefix: str) -> ApiKey | None:
    """The key whose plaintext starts with `prefix` (unique), revoked or not."""
    return session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()


def list_api_keys(
    session: Session, *, org_id: int | None = None, include_revoked: bool = False
) -> Sequence[ApiKey]:
    """Keys, oldest first, optionally of one organisation and without the revoked ones."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if org_id is not None:
        query = query.where(ApiKey.org_id == org_id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return session.scalars(query).all()
