"""What the benchmarks run against: a fresh Anvil, the deployed contracts, and gateway processes.

Everything lives in one temporary folder (chain state, SQLite database, keystore, keyring) and is
thrown away afterwards. The gateway is started exactly as an operator would start it in production,
`crm-chaincode serve` configured by environment variables: uvicorn with uvloop and httptools (both
come with `uvicorn[standard]`), log level `warning` (no access log), and ONE worker process,
because the transaction pipeline and the chain indexer run as threads inside the gateway process
(several workers would run several senders competing for the same nonces).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from web3 import HTTPProvider, Web3

from crm_gateway.chain.anvil import AnvilNode
from crm_gateway.chain.connection import Chain, connect
from crm_gateway.chain.deployments import DeploymentRecord
from crm_gateway.config import PROJECT_ROOT, ChainKind, Settings, settings_environment
from crm_gateway.runtime import deploy, open_keystore
from crm_gateway.security.apikeys import create_api_key
from crm_gateway.store.db import make_engine, make_session_factory, upgrade_database

#: Throwaway benchmark keys: a low scrypt work factor keeps the keystore fast to unlock.
SCRYPT_N = 2**4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_settings(root: Path, **overrides: Any) -> Settings:
    """Production defaults, except paths (all in `root`), ports, and throwaway-key scrypt."""
    values: dict[str, Any] = {
        "chain_kind": ChainKind.ANVIL,
        "anvil_port": free_port(),
        "anvil_state_file": root / "anvil" / "state.json",
        # The crash guarantees are not what is measured here; a large chain's state dump every
        # second would only take CPU from what is.
        "anvil_state_interval_seconds": 600,
        "database_url": f"sqlite:///{root / 'crm.db'}",
        "keystore_dir": root / "keystore",
        "keystore_scrypt_n": SCRYPT_N,
        "deployments_dir": root / "deployments",
        "vault_keyring_file": root / "vault" / "keyring.json",
        "gateway_port": free_port(),
        "log_level": "warning",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    """Every setting as an environment variable, as an operator's service unit would set them
    (`settings_environment`), over this process's environment less its VIRTUAL_ENV."""
    base = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return settings_environment(settings, base, **extra)


class Gateway:
    """`crm-chaincode serve` as a separate process (the production server configuration)."""

    def __init__(
        self,
        settings: Settings,
        log: Path,
        *,
        workers: int = 1,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.url = f"http://127.0.0.1:{settings.gateway_port}"
        self.log = log
        self.env = environment(settings, **(extra_env or {}))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 90) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "crm_gateway.cli", "serve", "--workers", str(self.workers)],
                env=self.env,
                cwd=self.log.parent,  # no .env of the working tree is picked up
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the gateway exited while starting:\n" + self.tail())
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the gateway did not become ready:\n" + self.tail())

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self, api_key: str | None = None, timeout: float = 60) -> httpx.Client:
        headers = {"X-API-Key": api_key} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


class Environment:
    """A fresh chain with the contracts deployed, the keys the scenarios need, and one database."""

    def __init__(self, root: Path, **overrides: Any) -> None:
        self.root = root
        self.settings = bench_settings(root, **overrides)
        self.node = AnvilNode(self.settings)
        self.chain: Chain
        self.record: DeploymentRecord
        self.deployer: str
        self.relayer: LocalAccount
        self.keys: dict[str, str] = {}

    def start(self) -> None:
        self.node.start()
        self.chain = connect(self.settings)
        keystore = open_keystore(self.settings)
        self.record = deploy(self.settings, self.chain, keystore).record
        self.deployer = str(self.record.deployer)
        self.relayer = keystore.create()
        self.chain.dev_fund(self.relayer.address, 10**22)
        upgrade_database(self.settings.database_url)
        self.keys = {
            "admin": self._api_key(self.deployer, "ORG_ADMIN"),
            "steward": self._api_key(self.deployer, "DATA_STEWARD"),
            "relayer": self._api_key(self.relayer.address, "RELAYER"),
        }

    def stop(self) -> None:
        self.node.stop()

    def _api_key(self, account: str, role: str) -> str:
        engine = make_engine(self.settings.database_url)
        try:
            with make_session_factory(engine)() as session:
                _key, plaintext = create_api_key(session, org_id=1, account=account, role=role)
                session.commit()
        finally:
            engine.dispose()
        return plaintext

    def deployer_key(self) -> LocalAccount:
        return open_keystore(self.settings).unlock(self.deployer)

    def w3(self) -> Web3:
        return Web3(HTTPProvider(self.node.url, request_kwargs={"timeout": 60}))

    def address(self, contract: str) -> ChecksumAddress:
        address = self.record.address_of(contract)
        assert address is not None, contract
        return Web3.to_checksum_address(address)

    def abi(self, contract: str) -> list[dict[str, Any]]:
        import json

        data = json.loads((PROJECT_ROOT / "abi" / f"{contract}.json").read_text())
        abi: list[dict[str, Any]] = data["abi"]
        return abi

    def gateway(self, name: str, **extra_env: str) -> Gateway:
        return Gateway(self.settings, self.root / name / "gateway.log", extra_env=extra_env)

    @contextmanager
    def serving(self, name: str, **extra_env: str) -> Iterator[Gateway]:
        gateway = self.gateway(name, **extra_env)
        gateway.start()
        try:
            yield gateway
        finally:
            gateway.stop()
