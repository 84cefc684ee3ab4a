"""On CHAIN_KIND=rpc the gateway and the CLI refuse the development password and the published
development keys, in one sentence and with a non-zero exit, before touching the network."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from typer.testing import CliRunner

from crm_gateway.chain.dev_secrets import DEVELOPMENT_ACCOUNTS, DevelopmentSecretRefused
from crm_gateway.chain.keystore import Keystore
from crm_gateway.cli import app
from crm_gateway.config import DEVELOPMENT_KEYSTORE_PASSWORD, ChainKind, get_settings
from crm_gateway.runtime import open_keystore
from tests.conftest import RPC_TEST_KEYSTORE_PASSWORD, TEST_SCRYPT_N, free_port, make_settings

ANVIL_ACCOUNT_0_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def test_the_published_accounts_are_those_of_the_test_mnemonic() -> None:
    Account.enable_unaudited_hdwallet_features()
    mnemonic = "test test test test test test test test test test test junk"
    derived = {
        Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}").address
        for i in range(10)
    }
    assert derived == DEVELOPMENT_ACCOUNTS


@pytest.fixture
def rpc_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    # Nothing listens on this port: the refusal must come before any chain call.
    monkeypatch.setenv("CHAIN_KIND", "rpc")
    monkeypatch.setenv("RPC_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("KEYSTORE_DIR", str(tmp_path / "keystore"))
    monkeypatch.setenv("KEYSTORE_SCRYPT_N", str(TEST_SCRYPT_N))
    monkeypatch.setenv("DEPLOYMENTS_DIR", str(tmp_path / "deployments"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'crm.db'}")
    monkeypatch.delenv("KEYSTORE_PASSWORD", raising=False)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


@pytest.mark.parametrize("command", ["serve", "deploy", "run"])
def test_rpc_with_the_development_password_does_not_start(rpc_env: CliRunner, command: str) -> None:
    result = rpc_env.invoke(app, [command])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert (
        "error: refusing to start on CHAIN_KIND=rpc with the development KEYSTORE_PASSWORD "
        "(it is public)"
    ) in output
    assert "Traceback" not in result.output


def test_rpc_with_a_published_development_key_does_not_start(
    rpc_env: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYSTORE_PASSWORD", RPC_TEST_KEYSTORE_PASSWORD)
    get_settings.cache_clear()
    keystore = Keystore(tmp_path / "keystore", RPC_TEST_KEYSTORE_PASSWORD, scrypt_n=TEST_SCRYPT_N)
    published = keystore.add(Account.from_key(ANVIL_ACCOUNT_0_KEY))
    keystore.create()
    result = rpc_env.invoke(app, ["serve"])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert (
        f"refusing to start on CHAIN_KIND=rpc with the development key of {published.address}"
    ) in output


def test_development_secrets_are_fine_on_development_chains(tmp_path: Path) -> None:
    for kind in (ChainKind.EMBEDDED, ChainKind.ANVIL):
        settings = make_settings(tmp_path, chain_kind=kind)
        assert settings.keystore_password.get_secret_value() == DEVELOPMENT_KEYSTORE_PASSWORD
        keystore = open_keystore(settings)
        keystore.add(Account.from_key(ANVIL_ACCOUNT_0_KEY))
        open_keystore(settings)


def test_rpc_with_an_own_password_and_own_keys_opens(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, chain_kind=ChainKind.RPC, keystore_password=RPC_TEST_KEYSTORE_PASSWORD
    )
    open_keystore(settings).create()
    assert len(open_keystore(settings).addresses()) == 1
    with pytest.raises(DevelopmentSecretRefused, match="development KEYSTORE_PASSWORD"):
        open_keystore(make_settings(tmp_path, chain_kind=ChainKind.RPC))
