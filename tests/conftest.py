"""Fixtures shared by every suite: settings in a temporary folder, and a gateway runtime."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from crm_gateway.config import ChainKind, Settings, get_settings
from crm_gateway.store.db import resolve_database_url

# pytest-xdist's workers inherit COLUMNS and LINES (80x24 without a terminal), and rich fixes a
# console's width from them when it is made: the CLI's consoles are made at import, so tests that
# widen COLUMNS for long addresses would go unheard. A CLI process reads them fresh at its start.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

# Throwaway test keys: a low scrypt work factor keeps keystore files fast to write and read.
TEST_SCRYPT_N = 2**4
# On CHAIN_KIND=rpc the development password is refused (crm_gateway/chain/dev_secrets.py).
RPC_TEST_KEYSTORE_PASSWORD = "rpc-test-password-not-the-development-one"


DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCHEMA_PREFIX = "crm_test_"


def _admin_engine(url: str) -> Engine:
    return create_engine(
        resolve_database_url(url),
        poolclass=NullPool,
        connect_args={"connect_timeout": 2},
        isolation_level="AUTOCOMMIT",
    )


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server URL, or a skip when nothing answers there."""
    url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    shown = make_url(url).render_as_string(hide_password=True)
    engine = _admin_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        pytest.skip(f"PostgreSQL not reachable at {shown}: {reason}")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A URL whose connections live in a fresh, empty schema, dropped after the test."""
    schema = f"{SCHEMA_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine(postgres_url)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text("SET lock_timeout = '10s'"))
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file in a not-yet-existing directory, or a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'crm.db'}"
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings whose every writable path lies in `tmp_path`, fast enough for tests."""
    values: dict[str, Any] = {
        "chain_kind": ChainKind.EMBEDDED,
        "database_url": f"sqlite:///{tmp_path / 'crm.db'}",
        "keystore_dir": tmp_path / "keystore",
        "keystore_scrypt_n": TEST_SCRYPT_N,
        "anvil_state_file": tmp_path / "anvil" / "state.json",
        "deployments_dir": tmp_path / "deployments",
        "vault_keyring_file": tmp_path / "vault" / "keyring.json",
        "sender_poll_seconds": 0.01,
        "watcher_poll_seconds": 0.02,
        "resubmit_after_seconds": 0.5,
        "finality_seconds": 0.0,
        "wait_timeout_seconds": 20.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    return lambda **overrides: make_settings(tmp_path, **overrides)


CHAIN_VARIANTS = [
    pytest.param(("embedded", "sqlite"), id="embedded-sqlite"),
    pytest.param(("embedded", "postgres"), id="embedded-postgres", marks=pytest.mark.postgres),
    pytest.param(("anvil", "sqlite"), id="anvil-sqlite", marks=pytest.mark.anvil),
    pytest.param(("rpc", "sqlite"), id="rpc-sqlite", marks=pytest.mark.anvil),
]


@pytest.fixture(params=CHAIN_VARIANTS)
def chain_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings for each chain kind the product supports, with SQLite or PostgreSQL.

    `anvil` is a real Anvil process started for this test; `rpc` talks to such a process as it
    would to any JSON-RPC network (Besu, GoQuorum): no faucet, a pre-funded deployer key.
    """
    kind, database = request.param
    overrides: dict[str, Any] = {}
    if database == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_schema_url")
    if kind == "embedded":
        yield make_settings(tmp_path, **overrides)
        return
    from crm_gateway.chain.anvil import AnvilNode, fund_dev_account

    port = free_port()
    node = AnvilNode(make_settings(tmp_path, chain_kind=ChainKind.ANVIL, anvil_port=port))
    node.start()
    try:
        if kind == "anvil":
            yield make_settings(tmp_path, chain_kind=ChainKind.ANVIL, anvil_port=port, **overrides)
            return
        settings = make_settings(
            tmp_path,
            chain_kind=ChainKind.RPC,
            rpc_url=node.url,
            keystore_password=RPC_TEST_KEYSTORE_PASSWORD,
            **overrides,
        )
        from web3 import Web3

        from crm_gateway.runtime import open_keystore

        deployer = open_keystore(settings).create()
        fund_dev_account(Web3(Web3.HTTPProvider(node.url)), deployer.address, 10**21)
        yield settings
    finally:
        node.stop()


def deploy_unless_embedded(settings: Settings) -> None:
    """Apply migrations as an admin would; the embedded chain deploys itself at start."""
    if settings.chain_kind is ChainKind.EMBEDDED:
        return
    from crm_gateway.chain.connection import connect
    from crm_gateway.runtime import deploy, open_keystore

    deploy(settings, connect(settings), open_keystore(settings))


@pytest.fixture
def runtime(chain_settings: Settings) -> Iterator[Any]:
    """A gateway runtime on each chain kind of `chain_settings`, its contracts deployed (suites
    that need another set-up override `runtime` in their own conftest)."""
    from crm_gateway.runtime import build_runtime

    deploy_unless_embedded(chain_settings)
    built = build_runtime(chain_settings)
    yield built
    built.close()


@pytest.fixture
def anvil_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, chain_kind=ChainKind.ANVIL, anvil_port=free_port())


@pytest.fixture
def node(anvil_settings: Settings) -> Iterator[Any]:
    from crm_gateway.chain.anvil import AnvilNode

    anvil = AnvilNode(anvil_settings)
    anvil.start()
    yield anvil
    anvil.stop()


@pytest.fixture
def cli_env(anvil_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The CLI reads its settings from the environment, as it does for an admin."""
    for name, value in anvil_settings.model_dump().items():
        if value is not None:
            raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            monkeypatch.setenv(name.upper(), str(raw))
    monkeypatch.setenv("COLUMNS", "250")  # rich tables would truncate addresses at 80
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()
