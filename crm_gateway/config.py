"""Every setting of crm-chaincode, in one place.

Each field reads the environment variable of the same name (upper case) and `.env`; every one is
listed with a comment in `.env.example`. Relative paths are resolved against `PROJECT_ROOT`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The default KEYSTORE_PASSWORD: public, so refused on CHAIN_KIND=rpc (chain/dev_secrets.py).
DEVELOPMENT_KEYSTORE_PASSWORD = "crm-chaincode-dev-only"  # noqa: S105 (public by design)


class ChainKind(StrEnum):
    """Which chain the project talks to."""

    EMBEDDED = "embedded"
    ANVIL = "anvil"
    RPC = "rpc"


class Settings(BaseSettings):
    """Settings read from the environment and `.env`."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- chain -------------------------------------------------------------------------------
    chain_kind: ChainKind = ChainKind.ANVIL
    rpc_url: str = "http://127.0.0.1:8545"
    rpc_timeout_seconds: float = 10.0
    expected_chain_id: int | None = None

    anvil_binary: Path = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
    anvil_host: str = "127.0.0.1"
    anvil_port: Annotated[int, Field(ge=1, le=65535)] = 8545
    anvil_chain_id: int = 31337
    anvil_state_file: Path = Path("var/anvil/state.json")
    anvil_state_interval_seconds: Annotated[int, Field(ge=1)] = 1
    anvil_block_time_seconds: float | None = None
    # Gas per block (Anvil's default is 30,000,000). With a block time, a larger limit lets one
    # block carry many batches, as a consortium network's blocks do.
    anvil_block_gas_limit: Annotated[int, Field(ge=1_000_000)] | None = None
    anvil_start_timeout_seconds: float = 30.0
    # Keep the state at every block in the state file, so eth_call/eth_getBalance at an older
    # block still work after a restart (Anvil forgets them otherwise); ~15x larger state file.
    anvil_preserve_historical_states: bool = False

    # --- compiler ----------------------------------------------------------------------------
    solc_version: str = "0.8.30"
    evm_version: str = "cancun"
    optimizer_runs: Annotated[int, Field(ge=1)] = 200
    contracts_dir: Path = Path("contracts")
    abi_dir: Path = Path("abi")
    node_modules_dir: Path = Path("node_modules")
    node_binary: str = "node"

    # --- deployment --------------------------------------------------------------------------
    migrations_dir: Path = Path("migrations")
    deployments_dir: Path = Path("abi/deployments")
    founder_org_name: str = "founder"
    approval_threshold_bps: Annotated[int, Field(ge=1, le=10_000)] = 5_001
    proposal_lifetime_seconds: Annotated[int, Field(ge=60)] = 7 * 24 * 3600

    # --- signing keys ------------------------------------------------------------------------
    keystore_dir: Path = Path("var/keystore")
    keystore_password: SecretStr = SecretStr(DEVELOPMENT_KEYSTORE_PASSWORD)
    # scrypt work factor n for new keystore files (a power of two); eth-account's default is
    # 262144 (about a second per key). Lower it only for throwaway test keys.
    keystore_scrypt_n: Annotated[int, Field(ge=2)] = 262_144
    deployer_account: str | None = None
    dev_fund_wei: int = 10**21

    # --- database ----------------------------------------------------------------------------
    database_url: str = "sqlite:///var/crm.db"
    database_echo: bool = False

    # --- transaction pipeline ----------------------------------------------------------------
    pipeline_enabled: bool = True
    sender_poll_seconds: Annotated[float, Field(gt=0)] = 0.05
    watcher_poll_seconds: Annotated[float, Field(gt=0)] = 0.2
    resubmit_after_seconds: Annotated[float, Field(gt=0)] = 3.0
    # Longer than Anvil's state interval: a receipt still there this long after it was first
    # seen has been written to the node's state file and survives a SIGKILL of the node.
    finality_seconds: Annotated[float, Field(ge=0)] = 3.0
    gas_limit_multiplier: Annotated[float, Field(ge=1.0)] = 1.25
    # Consecutive rows of a batchable kind (relayed consents, registrations) from one signer go
    # in one transaction, at most this many, and split further if it would exceed the gas below.
    pipeline_max_batch_items: Annotated[int, Field(ge=1, le=1_000)] = 100
    pipeline_max_batch_gas: Annotated[int, Field(ge=100_000)] = 12_000_000
    wait_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    # Several processes may share the database (gateway replicas, API workers, CLI commands):
    # one at a time signs for each account and one runs the watcher, the indexer and anchoring,
    # under leases renewed while they work; a process that dies loses them after this long.
    lease_seconds: Annotated[float, Field(gt=0)] = 10.0

    # --- indexer and read model --------------------------------------------------------------
    # Run the indexer (contract events into the read model) inside the gateway.
    indexer_enabled: bool = True
    # Seconds between polls for new blocks once the read model is at the chain head.
    indexer_poll_seconds: Annotated[float, Field(gt=0)] = 0.2
    # Most blocks read by one eth_getLogs and written in one database transaction.
    indexer_max_block_range: Annotated[int, Field(ge=1)] = 500
    # How many recent blocks keep their hash, to find the common ancestor after a reorg.
    indexer_reorg_depth: Annotated[int, Field(ge=1)] = 1000

    # --- anchored access log -----------------------------------------------------------------
    # Anchor the access log on-chain periodically from the gateway (also on demand: the API and
    # `crm-chaincode audit anchor`).
    audit_anchor_enabled: bool = True
    # Seconds between two anchoring rounds (each anchors every entry logged since the last one).
    audit_anchor_interval_seconds: Annotated[float, Field(gt=0)] = 300.0
    # Most entries under one Merkle root (one transaction each, whatever the size).
    audit_anchor_batch_size: Annotated[int, Field(ge=1, le=65_536)] = 10_000
    # Keystore account that signs the periodic anchors; it must hold AUDITOR in GATEWAY_ORG_ID.
    # Unset: the first keystore account that does.
    audit_anchor_account: str | None = None

    # --- personal-data vault -----------------------------------------------------------------
    # JSON keyring of key-encryption keys (and, unless INDEX_KEY is set, the blind-index key);
    # created with mode 0600 on first use, refused when group or others may read it.
    vault_keyring_file: Path = Path("var/vault/keyring.json")
    # Blind-index key, 64 hex digits (256 bits); the SAME value in every organisation of the
    # consortium (it derives the shared customer ids). Unset: the one in the keyring file.
    index_key: SecretStr | None = None
    # Region (ISO 3166-1 alpha-2) assumed for phone numbers written without a +country code.
    default_phone_region: str = "GB"
    # Records re-wrapped per database transaction by `keys rotate` (resumable per batch).
    key_rotation_batch_size: Annotated[int, Field(ge=1, le=100_000)] = 1_000

    # --- gateway -----------------------------------------------------------------------------
    # The organisation whose customer data this gateway holds (one gateway per organisation);
    # API keys of other organisations may manage roles here but never see its customers.
    gateway_org_id: Annotated[int, Field(ge=1)] = 1
    # How long a wallet's signature over typed data stays valid (the `deadline` handed out); the
    # migration also makes it the ConsentLedger's `maxSignatureLifetime` (no consent change is
    # accepted with a deadline further ahead, so a relayer cannot hold a signature back for long).
    signature_ttl_seconds: Annotated[int, Field(ge=30)] = 3600
    # Largest request body accepted (bytes); a larger one gets a 413 problem before it is read
    # (an unauthenticated one gets its 401 first).
    max_request_body_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    # Seconds a wallet recovery started by the customer's custodian organisation waits before it
    # can complete, during which the current wallet can cancel it; set in the CustomerRegistry
    # by the migration (48 h by default).
    wallet_recovery_delay_seconds: Annotated[int, Field(ge=1)] = 172800
    gateway_host: str = "127.0.0.1"
    gateway_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    log_level: str = "info"

    # --- portal, console and /docs (the browser) -----------------------------------------------
    # The gateway's origin as browsers reach it (scheme://host[:port]): Sign-In with Ethereum
    # messages must name its host as their domain and it as their URI. Unset:
    # http://GATEWAY_HOST:GATEWAY_PORT.
    public_url: str | None = None
    # Folder of the built web assets (`make deps` runs `node tools/build-web.mjs` into it).
    web_assets_dir: Path = Path("build/web")
    # Seconds a portal or console session lasts after sign-in.
    web_session_ttl_seconds: Annotated[int, Field(ge=60)] = 1800
    # Seconds a sign-in nonce stays usable, and the longest validity a sign-in message may claim.
    siwe_max_lifetime_seconds: Annotated[int, Field(ge=30)] = 600
    # Keystore account that relays the consent changes customers sign in the portal; it must hold
    # RELAYER in GATEWAY_ORG_ID. Unset: the first keystore account that does.
    portal_relayer_account: str | None = None

    @field_validator("evm_version")
    @classmethod
    def _known_evm_version(cls, value: str) -> str:
        # OpenZeppelin 5's Bytes library (under SignatureChecker, EIP712) uses Cancun's MCOPY, so
        # nothing older compiles; a Besu or GoQuorum network must run Cancun or later.
        known = {"cancun", "prague"}
        if value not in known:
            raise ValueError(f"evm_version must be one of {sorted(known)} (Cancun or later)")
        return value

    @field_validator("default_phone_region")
    @classmethod
    def _known_phone_region(cls, value: str) -> str:
        import phonenumbers

        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("default_phone_region must be a region known to phonenumbers, e.g. GB")
        return region

    @field_validator("index_key")
    @classmethod
    def _index_key_is_256_bit_hex(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        raw = value.get_secret_value().strip().removeprefix("0x")
        try:
            key = bytes.fromhex(raw)
        except ValueError:
            raise ValueError("index_key must be 64 hex digits (256 bits)") from None
        if len(key) != 32:
            raise ValueError("index_key must be 64 hex digits (256 bits)")
        return SecretStr(raw.lower())

    def path(self, value: Path) -> Path:
        """Resolve a configured path against the project root."""
        return value if value.is_absolute() else PROJECT_ROOT / value

    @property
    def origin(self) -> str:
        """The gateway's origin as browsers reach it (`PUBLIC_URL`, without a trailing `/`)."""
        return (self.public_url or f"http://{self.gateway_host}:{self.gateway_port}").rstrip("/")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests build their own `Settings` instead)."""
    return Settings()


def settings_environment(
    settings: Settings, base: Mapping[str, str] | None = None, **extra: str
) -> dict[str, str]:
    """`settings` as the environment of a child process (a gateway, an importer) that reads them
    back with `Settings()`: configured as an operator configures one, by environment variables of
    the same names as `.env.example` (upper case), rather than by an object it cannot receive.

    Starts from `base` (default: this process's environment) so the child still finds its PATH
    and the like; secrets are unwrapped to their values (`str(SecretStr)` is a mask); a setting
    that is None is removed, not set to "None", so the child takes it as unset; `extra` comes
    last, over everything.
    """
    env = dict(os.environ if base is None else base)
    for name, value in settings.model_dump().items():
        if value is None:
            env.pop(name.upper(), None)
            continue
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        env[name.upper()] = str(raw)
    env.update(extra)
    return env
