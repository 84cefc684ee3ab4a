"""`settings_environment`: settings handed to a child process as its environment variables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from crm_gateway.config import ChainKind, Settings, settings_environment

INDEX_KEY = "ab" * 32


def _configured() -> Settings:
    """Settings unlike the defaults in every kind of field: secret, None, enum, path, bool."""
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        chain_kind=ChainKind.RPC,
        rpc_url="http://node.example:8545",
        expected_chain_id=None,
        anvil_block_time_seconds=0.5,
        keystore_dir=Path("/srv/crm/keystore"),
        keystore_password=SecretStr("correct horse battery staple"),
        index_key=SecretStr(INDEX_KEY),
        deployer_account=None,
        database_echo=True,
        sender_poll_seconds=0.125,
        gateway_port=9123,
    )


def test_a_child_reading_the_environment_gets_the_same_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = _configured()
    base = {
        "PATH": "/usr/bin",
        # What the parent's own environment says must not leak through a None setting.
        "DEPLOYER_ACCOUNT": "0x00000000000000000000000000000000000000aa",
        "EXPECTED_CHAIN_ID": "5",
        "KEYSTORE_PASSWORD": "the parent's password",
    }
    env = settings_environment(original, base)

    assert env["PATH"] == "/usr/bin"
    assert env["KEYSTORE_PASSWORD"] == "correct horse battery staple"
    assert env["INDEX_KEY"] == INDEX_KEY
    assert "DEPLOYER_ACCOUNT" not in env
    assert "EXPECTED_CHAIN_ID" not in env
    assert "None" not in env.values()
    assert not any("*" in value for value in env.values()), "a secret was passed masked"

    # The child: nothing but that environment, and no .env.
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    child = Settings(_env_file=None)  # type: ignore[call-arg]

    assert child == original
    assert child.keystore_password.get_secret_value() == "correct horse battery staple"
    assert child.index_key is not None
    assert child.index_key.get_secret_value() == INDEX_KEY
    assert child.deployer_account is None
    assert child.expected_chain_id is None
    assert (child.chain_kind, child.keystore_dir) == (ChainKind.RPC, Path("/srv/crm/keystore"))
    assert (child.database_echo, child.anvil_block_time_seconds) == (True, 0.5)


def test_starts_from_this_process_environment_and_extra_comes_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRM_SETTINGS_ENVIRONMENT_MARKER", "kept")
    monkeypatch.setenv("GATEWAY_PORT", "1")
    env = settings_environment(_configured(), LOG_LEVEL="debug", PIPELINE_ENABLED="false")

    assert env["CRM_SETTINGS_ENVIRONMENT_MARKER"] == "kept"
    assert env["GATEWAY_PORT"] == "9123"
    assert (env["LOG_LEVEL"], env["PIPELINE_ENABLED"]) == ("debug", "false")
    assert "CRM_SETTINGS_ENVIRONMENT_MARKER" not in settings_environment(_configured(), {})
