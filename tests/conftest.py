"""Fixtures shared by every suite: settings in a temporary folder, and a gateway runtime."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crm_gateway.config import ChainKind, Settings

# Throwaway test keys: a low scrypt work factor keeps keystore files fast to write and read.
TEST_SCRYPT_N = 2**4


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


@pytest.fixture(params=[pytest.param("embedded"), pytest.param("anvil", marks=pytest.mark.anvil)])
def chain_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings for the embedded chain, and for a real Anvil process started for this test."""
    if request.param == "embedded":
        yield make_settings(tmp_path)
        return
    from crm_gateway.chain.anvil import AnvilNode

    settings = make_settings(tmp_path, chain_kind=ChainKind.ANVIL, anvil_port=free_port())
    node = AnvilNode(settings)
    node.start()
    try:
        yield settings
    finally:
        node.stop()
