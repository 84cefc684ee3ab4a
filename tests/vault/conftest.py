"""Vault fixtures: a keyring in a temporary folder, and a migrated database for rotation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from crm_gateway.store.db import make_engine, make_session_factory, upgrade_database
from crm_gateway.vault.keys import KeyringFileProvider


@pytest.fixture
def keyring_path(tmp_path: Path) -> Path:
    return tmp_path / "vault" / "keyring.json"


@pytest.fixture
def provider(keyring_path: Path) -> KeyringFileProvider:
    return KeyringFileProvider(keyring_path)


@pytest.fixture(scope="module")
def shared_provider(tmp_path_factory: pytest.TempPathFactory) -> KeyringFileProvider:
    """One keyring for a whole module (for hypothesis tests, which run a test many times)."""
    return KeyringFileProvider(tmp_path_factory.mktemp("keyring") / "keyring.json")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    upgrade_database(db_url)
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)
